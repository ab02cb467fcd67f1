from svg_lightning.convert.command import convert_main

if __name__ == "__main__":
    raise SystemExit(convert_main())
