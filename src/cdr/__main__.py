"""``python -m cdr``: the ``cdr`` command (also how torchrun starts each rank:
``torchrun --nproc-per-node N -m cdr run ...``)."""

from cdr.cli.app import app

if __name__ == "__main__":
    app(prog_name="cdr")
