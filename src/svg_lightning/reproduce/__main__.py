from svg_lightning.reproduce.command import reproduce_main

if __name__ == "__main__":
    raise SystemExit(reproduce_main())
