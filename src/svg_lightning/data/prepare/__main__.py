from svg_lightning.data.prepare.command import prepare_main

if __name__ == "__main__":
    raise SystemExit(prepare_main())
