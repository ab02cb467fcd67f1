from svg_lightning.cli import quickstart_docs_main

if __name__ == "__main__":
    raise SystemExit(quickstart_docs_main())
