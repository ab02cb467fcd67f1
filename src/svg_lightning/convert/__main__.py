from svg_lightning.cli import convert_main

if __name__ == "__main__":
    raise SystemExit(convert_main())
