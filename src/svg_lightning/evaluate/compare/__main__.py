from svg_lightning.cli import compare_main

if __name__ == "__main__":
    raise SystemExit(compare_main())
