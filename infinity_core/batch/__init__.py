"""`python -m infinity_core batch LIST -o FOLDER`: a prompt list drawn into a folder, resumable, on one
machine or on a Ray cluster.

- rows.py: the list (.txt, .jsonl, .csv) read and every row checked, before any model loads;
- manifest.py: the folder's record of what is done, so a re-run resumes;
- render.py: the worker: models loaded once, rows of equal settings drawn together, images out;
- runner.py: the job on this machine: the plan, the device batches, the writes, the progress bar;
- ray_runner.py: the same job over a Ray actor pool (Ray is imported only there, and only when asked);
- command.py: the command line.

The rule that makes it all safe to split and resume: a row's image depends only on its own settings and
seed (each prompt is encoded alone, each image draws from its own seed and is decoded alone), never on
the rows it was batched with, the worker, or the order.
"""
