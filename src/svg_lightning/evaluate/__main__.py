from svg_lightning.cli import evaluate_main

if __name__ == "__main__":
    evaluate_main()
