from svg_lightning.cli import prepare_main

if __name__ == "__main__":
    raise SystemExit(prepare_main())
