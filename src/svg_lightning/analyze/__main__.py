from svg_lightning.analyze.command import analyze_main

if __name__ == "__main__":
    analyze_main()
