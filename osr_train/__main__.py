"""``python -m osr_train``: the ``osr-train`` command, as ``torchrun -m osr_train siamese ...`` starts each rank."""

from osr_train.cli import main

if __name__ == "__main__":
    main()
