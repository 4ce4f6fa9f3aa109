#!/usr/bin/env bash
# Reproduces sweep run r000-wd=0.001-units=100x100.
cd /work/main && /root/.pyenv/versions/3.11.7/bin/python3 -m experiments.segment --config=experiments/configs/weizmann_horse.py:vgg --workdir=/root/runs/sweep_horse/r000-wd=0.001-units=100x100 --config.data.manual_dir=/work/shared/data/weizmann_horse --config.model.vgg_weights=/work/shared/data/vgg16/vgg16-397923af-conv1_1-conv3_3.pth --config.data.data_dir=/root/runs/tfds --config.train.num_epochs=60 --config.optimizer.weight_decay=0.001 '--config.model.reseg.units=(100, 100)' "$@"
