from svg_lightning.cli import sample_main

if __name__ == "__main__":
    sample_main()
