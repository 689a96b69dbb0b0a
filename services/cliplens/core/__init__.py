"""Pure-torch core of cliplens: models and activation sites, SAEs and training, evaluation.

Nothing in this package touches the network, object storage, Redis or Ray; the only files it reads
or writes are model and SAE checkpoints on a local path given by the caller.
"""
