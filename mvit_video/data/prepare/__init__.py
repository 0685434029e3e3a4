"""Dataset preparation tools behind scripts/: official annotations -> list files (`kinetics`, `ssv2`) and the
dataset doctor (`check`). Each module has the logic plus its command line `main(argv)`; the scripts only call it."""
