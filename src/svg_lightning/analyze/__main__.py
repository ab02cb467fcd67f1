from svg_lightning.cli import analyze_main

if __name__ == "__main__":
    analyze_main()
