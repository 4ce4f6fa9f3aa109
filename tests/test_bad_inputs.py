"""Bad inputs to every entry point, table-driven: each must end with one line,
`error: <what> (<fix>)`, exit status 2, and leave the workdir not created (or, when it
existed, byte for byte as it was) and the data folders untouched.

The cases run through `cli_runner.py` (one process imports the libraries, each case runs
forked as `python -m MODULE ARGS`), so the ~100 command lines take well under a minute.
"""

import fcntl
import hashlib
import io
import json
import os
import re
import tarfile

import numpy as np
import pytest
from PIL import Image

import cli_runner
import fixtures
from experiments.configs import digits as digits_config
from experiments.configs import digits_seg as digits_seg_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSIFY, SEGMENT, PREDICT = "experiments.classify", "experiments.segment", "experiments.predict"
VIDEO = "experiments.segment_video"
EXPORT = "experiments.export"
EVALUATE = "experiments.evaluate"
BENCH = "experiments.bench"
FOLDER = "--config=experiments/configs/segmentation_folder.py"
IMAGES = "--config=experiments/configs/image_folder.py"
MOVING = "--config=experiments/configs/moving_digits_seg.py"
CAMVID_VIDEO = "--config=experiments/configs/camvid_video.py:quick"
VIDEO_MODEL = "--config.model.conv_deconv_rnn"
SWEEP, REPORT = "launch.sweep", "launch.report"
DIGITS = "--config=experiments/configs/digits.py"
DIGITS_SEG = "--config=experiments/configs/digits_seg.py"

# (id, module, args, text the one line must hold). "{root}" is the test's folder of
# data fixtures; classify/segment cases get --workdir={root}/runs/<id> (must not appear)
# and --config.data.data_dir={root}/tfds.
CASES = [
    # Config options, fields and values.
    ("option_typo", CLASSIFY, ["--config=experiments/configs/digits.py:quikc"],
     "Unknown config option 'quikc' (did you mean 'quick'?)"),
    ("option_needs_bool", CLASSIFY, ["--config=experiments/configs/digits.py:quick=maybe"],
     "expected true or false"),
    ("field_typo", CLASSIFY, [DIGITS, "--config.model.renet.unitz=3"],
     "no config field 'unitz' (did you mean 'units'?)"),
    ("field_wrong_type", CLASSIFY, [DIGITS, "--config.train.batch_size=abc"], "batch_size"),
    ("units_zero", CLASSIFY, [DIGITS, "--config.model.renet.units=(0, 32)"],
     "model.renet.units=(0, 32) must be a tuple of positive ints"),
    ("units_not_ints", CLASSIFY, [DIGITS, "--config.model.renet.units=abc"],
     "must be a tuple of positive ints"),
    ("patch_not_dividing", CLASSIFY, [DIGITS, "--config.model.renet.patch_sizes=((3, 3), (2, 2))"],
     "image height 8 is not divisible by patch height 3"),
    ("patch_count_mismatch", CLASSIFY, [DIGITS, "--config.model.renet.patch_sizes=((2, 2),)"],
     "2 entries in units but 1 in patch_sizes"),
    ("patch_zero", CLASSIFY, [DIGITS, "--config.model.renet.patch_sizes=((0, 2), (2, 2))"],
     "pairs of positive ints"),
    ("cell_unknown", CLASSIFY, [DIGITS, "--config.model.renet.cell=gru2"],
     "model.renet.cell='gru2' is unknown (did you mean 'gru'?"),
    ("impl_unknown", CLASSIFY, [DIGITS, "--config.model.renet.impl=cuda"],
     "model.renet.impl='cuda' is unknown"),
    ("order_unknown", CLASSIFY, [DIGITS, "--config.model.renet.order=diagonal"],
     "model.renet.order='diagonal' is unknown"),
    ("pad_unknown", CLASSIFY, [DIGITS, "--config.model.renet.pad=reflect"],
     "model.renet.pad='reflect' is unknown"),
    ("directions_unknown", CLASSIFY, [DIGITS, "--config.model.renet.directions=both"],
     "model.renet.directions='both' is unknown"),
    ("precision_unknown", CLASSIFY, [DIGITS, "--config.model.precision=fp16"],
     "model.precision='fp16' is unknown"),
    ("fc_units_zero", CLASSIFY, [DIGITS, "--config.model.renet.fc_units=(0,)"],
     "model.renet.fc_units=(0,)"),
    ("cnn_features_zero", CLASSIFY, [DIGITS, "--config.model.name=cnn",
                                     "--config.model.cnn.features=(0, 8)"],
     "model.cnn.features=(0, 8)"),
    ("model_unknown", CLASSIFY, [DIGITS, "--config.model.name=vit"],
     "model.name='vit' is unknown"),
    ("dropout_one", CLASSIFY, [DIGITS, "--config.model.renet.dropout_rate=1.0"],
     "dropout_rate=1.0 must lie in [0, 1)"),
    ("mask_negative", CLASSIFY, [DIGITS, "--config.model.renet.input_mask_rate=-0.1"],
     "input_mask_rate=-0.1 must lie in [0, 1)"),
    ("batch_zero", CLASSIFY, [DIGITS, "--config.train.batch_size=0"],
     "train.batch_size=0 must be positive"),
    ("batch_too_large", CLASSIFY, [DIGITS, "--config.train.batch_size=100000"],
     "train.batch_size=100000 exceeds the 1197 training examples"),
    ("eval_batch_negative", CLASSIFY, [DIGITS, "--config.train.eval_batch_size=-1"],
     "train.eval_batch_size=-1 must be positive"),
    ("epochs_zero", CLASSIFY, [DIGITS, "--config.train.num_epochs=0"],
     "train.num_epochs=0 must be positive"),
    ("log_every_zero", CLASSIFY, [DIGITS, "--config.train.log_every_steps=0"],
     "train.log_every_steps=0 must be positive"),
    ("keep_zero", CLASSIFY, [DIGITS, "--config.train.keep_checkpoints=0"],
     "train.keep_checkpoints=0 must be at least 1"),
    ("stop_after_negative", CLASSIFY, [DIGITS, "--config.train.stop_after_steps=-5"],
     "train.stop_after_steps=-5 must be >= 0"),
    ("checkpoint_every_negative", CLASSIFY, [DIGITS, "--config.train.checkpoint_every_steps=-1"],
     "train.checkpoint_every_steps=-1 must be >= 0"),
    ("time_budget_negative", CLASSIFY, [DIGITS, "--config.train.time_budget_s=-1"],
     "train.time_budget_s=-1"),
    ("patience_negative", CLASSIFY, [DIGITS, "--config.train.patience=-1"],
     "train.patience=-1 must be >= 0"),
    ("optimizer_unknown", CLASSIFY, [DIGITS, "--config.optimizer.name=adamw"],
     "optimizer.name='adamw' is unknown (did you mean 'adam'?"),
    ("lr_zero", CLASSIFY, [DIGITS, "--config.optimizer.learning_rate=0.0"],
     "optimizer.learning_rate=0.0 must be positive"),
    ("schedule_unknown", CLASSIFY, [DIGITS, "--config.optimizer.schedule=linear"],
     "optimizer.schedule='linear' is unknown"),
    ("momentum_too_large", CLASSIFY, [DIGITS, "--config.optimizer.momentum=1.5"],
     "optimizer.momentum=1.5 must lie in [0, 1)"),
    ("lr_scaling_unknown", CLASSIFY, [DIGITS, "--config.optimizer.lr_scaling=cubic"],
     "optimizer.lr_scaling='cubic' is unknown"),
    ("clip_negative", CLASSIFY, [DIGITS, "--config.optimizer.clip_norm=-1.0"],
     "optimizer.clip_norm=-1.0 must be >= 0"),
    ("weight_decay_negative", CLASSIFY, [DIGITS, "--config.optimizer.weight_decay=-0.1"],
     "optimizer.weight_decay=-0.1 must be >= 0"),
    ("decay_rate_zero", CLASSIFY, [DIGITS, "--config.optimizer.decay_rate=0.0"],
     "optimizer.decay_rate=0.0 must lie in (0, 1]"),
    ("flip_unknown", CLASSIFY, [DIGITS, "--config.data.flip=vertical"],
     "data.flip='vertical' is unknown"),
    ("on_device_unknown", CLASSIFY, [DIGITS, "--config.data.on_device=maybe"],
     "data.on_device='maybe' is unknown"),
    ("cache_features_unknown", SEGMENT, [DIGITS_SEG, "--config.data.cache_features=yes"],
     "data.cache_features='yes' is unknown"),
    ("cache_features_without_vgg", SEGMENT, [DIGITS_SEG,
                                             "--config.data.cache_features=true"],
     "data.cache_features=true caches the frozen VGG front end's features, but "
     "model.reseg.vgg is off"),
    # Video: the model against the frames, clips, the clip folders.
    ("video_strides_too_large", VIDEO, [MOVING, f"{VIDEO_MODEL}.encoder_strides=(8, 8)",
                                        f"{VIDEO_MODEL}.decoder_strides=(8, 8)"],
     "the encoder takes frames to 1/64 of their size (encoder strides (8, 8)), more than "
     "the 32x32 frames have"),
    ("video_strides_mismatch", VIDEO, [MOVING, f"{VIDEO_MODEL}.decoder_strides=(2, 4)"],
     "decoder_strides=(2, 4) multiply to 8 but the encoder's features are at 1/4"),
    ("video_state_convs_shape", VIDEO, [MOVING, f"{VIDEO_MODEL}.state_convs=((16,),)"],
     "model.conv_deconv_rnn.state_convs=((16,),) must be a tuple of (features, kernel) "
     "pairs"),
    ("video_input_convs_zero", VIDEO, [MOVING, f"{VIDEO_MODEL}.input_convs=((0, 3),)"],
     "model.conv_deconv_rnn.input_convs=((0, 3),) must be a tuple of (features, kernel)"),
    ("video_clip_frames_one", VIDEO, [MOVING, "--config.data.clip_frames=1"],
     "data.clip_frames=1: the moving_digits_seg clips hold 10 frames; choose 2..10"),
    ("video_clip_frames_zero", VIDEO, [MOVING, "--config.data.clip_frames=0"],
     "data.clip_frames=0: the moving_digits_seg clips hold 10 frames; choose 2..10"),
    ("video_clip_frames_too_many", VIDEO, [MOVING, "--config.data.clip_frames=11"],
     "data.clip_frames=11"),
    ("video_label_size", VIDEO, [CAMVID_VIDEO, "--config.data.manual_dir={root}/video_sizes"],
     "the clip's frames and labels differ in size"),
    ("video_frame_names", VIDEO, [CAMVID_VIDEO, "--config.data.manual_dir={root}/camvid_sizes"],
     "is not a CamVid frame name (<sequence>_<frame number>)"),
    ("video_too_short", VIDEO, [CAMVID_VIDEO, "--config.data.manual_dir={root}/video_short"],
     "has no run of 5 frames of one sequence 30 frames apart"),
    ("dataset_unknown", CLASSIFY, [DIGITS, "--config.data.name=mnsit"],
     "data.name='mnsit' is unknown (did you mean 'mnist'?"),
    ("shift_negative", CLASSIFY, [DIGITS, "--config.data.shift=-1"],
     "data.shift=-1 must be >= 0"),
    ("manual_dir_missing", CLASSIFY, [DIGITS, "--config.data.manual_dir={root}/nowhere"],
     "data.manual_dir='{root}/nowhere' is not a folder"),
    ("config_file_missing", CLASSIFY, ["--config=experiments/configs/nope.py"],
     "No such file or directory"),
    ("flag_typo", CLASSIFY, [DIGITS, "--workdri=x"], "Unknown command line flag 'workdri'"),
    ("positional_argument", CLASSIFY, [DIGITS, "extra"], "unexpected arguments ['extra']"),
    ("workdir_is_a_file", CLASSIFY, [DIGITS, "--workdir={root}/a_file"], "is a file"),
    ("workdir_other_config", CLASSIFY, [DIGITS, "--workdir={root}/seed1_run"],
     "holds a run with another config: seed 1 -> 0"),
    ("workdir_busy", CLASSIFY, [DIGITS, "--workdir={root}/busy_run"],
     f"is in use by another run (pid {os.getpid()})"),
    # Segmentation configs.
    ("seg_vgg_without_weights", SEGMENT, ["--config=experiments/configs/digits_seg.py:vgg"],
     "model.reseg.vgg=True needs ImageNet VGG-16 weights"),
    ("seg_vgg_weights_missing", SEGMENT, ["--config=experiments/configs/digits_seg.py:vgg",
                                          "--config.model.vgg_weights={root}/none.pth"],
     "is not a file"),
    ("seg_vgg_weights_garbage_pth", SEGMENT, ["--config=experiments/configs/digits_seg.py:vgg",
                                              "--config.model.vgg_weights={root}/garbage.pth"],
     "garbage.pth: not a readable torch.save file"),
    ("seg_vgg_weights_garbage_npz", SEGMENT, ["--config=experiments/configs/digits_seg.py:vgg",
                                              "--config.model.vgg_weights={root}/garbage.npz"],
     "garbage.npz: not a readable .npz file"),
    ("seg_vgg_weights_garbage_h5", SEGMENT, ["--config=experiments/configs/digits_seg.py:vgg",
                                             "--config.model.vgg_weights={root}/garbage.h5"],
     "garbage.h5: not a readable HDF5 file"),
    ("seg_vgg_weights_format", SEGMENT, ["--config=experiments/configs/digits_seg.py:vgg",
                                         "--config.model.vgg_weights={root}/weights.bin"],
     "unknown VGG weights format '.bin'"),
    ("seg_upsample_count", SEGMENT, [DIGITS_SEG, "--config.model.reseg.upsample_kernels=((2, 2),)"],
     "2 entries in upsample_filters but 1 in upsample_kernels"),
    ("seg_upsample_stride", SEGMENT, [DIGITS_SEG,
                                      "--config.model.reseg.upsample_kernels=((2, 2), (1, 1))"],
     "multiply to (2, 2) but the features are at 1/(4, 4)"),
    ("seg_image_size_half", SEGMENT, [DIGITS_SEG, "--config.data.image_size=(0, 64)"],
     "data.image_size=(0, 64) must be two positive sizes"),
    ("seg_classification_dataset", SEGMENT, [DIGITS_SEG, "--config.data.name=mnist"],
     "data.name='mnist' is unknown"),
    ("seg_panels_negative", SEGMENT, [DIGITS_SEG, "--config.evals.panels.num_panels=-1"],
     "evals.panels.num_panels=-1 must be >= 0"),
    ("seg_evaluator_unknown", SEGMENT, [DIGITS_SEG, "--config.evals.panels.type=panel"],
     "evals.panels.type='panel' is unknown (did you mean 'panels'?"),
    ("seg_balancing_power_negative", SEGMENT, [DIGITS_SEG, "--config.loss.balancing_power=-1"],
     "loss.balancing_power=-1.0 must lie in [0, 4]"),
    ("seg_loss_normalization_unknown", SEGMENT,
     [DIGITS_SEG, "--config.loss.normalization=image"], "loss.normalization='image' is"),
    ("seg_option_typo", SEGMENT, ["--config=experiments/configs/camvid.py:vgg,balance"],
     "Unknown config option 'balance' (did you mean 'balanced'?)"),
    # Dataset files.
    ("mnist_empty_folder", CLASSIFY, ["--config=experiments/configs/mnist.py",
                                      "--config.data.manual_dir={root}/mnist_empty"],
     "mnist_empty lacks ['train-images-idx3-ubyte.gz'"),
    ("mnist_truncated_header", CLASSIFY, ["--config=experiments/configs/mnist.py",
                                          "--config.data.manual_dir={root}/mnist_short_header"],
     "train-labels-idx1-ubyte.gz: the header is cut short"),
    ("mnist_bad_magic", CLASSIFY, ["--config=experiments/configs/mnist.py",
                                   "--config.data.manual_dir={root}/mnist_bad_magic"],
     "train-images-idx3-ubyte.gz: not an unsigned-byte idx file (bad magic number)"),
    ("mnist_truncated_body", CLASSIFY, ["--config=experiments/configs/mnist.py",
                                        "--config.data.manual_dir={root}/mnist_short_body"],
     "train-images-idx3-ubyte.gz: header says shape (60, 28, 28)"),
    ("mnist_label_out_of_range", CLASSIFY, ["--config=experiments/configs/mnist.py",
                                            "--config.data.manual_dir={root}/mnist_label_12"],
     "train-labels-idx1-ubyte.gz: label 12 at index 3 is out of range 0..9"),
    ("mnist_count_mismatch", CLASSIFY, ["--config=experiments/configs/mnist.py",
                                        "--config.data.manual_dir={root}/mnist_59_labels"],
     "are not a matching image/label pair of idx files"),
    ("mnist_not_gzip", CLASSIFY, ["--config=experiments/configs/mnist.py",
                                  "--config.data.manual_dir={root}/mnist_not_gzip"],
     "train-images-idx3-ubyte.gz: cannot be read"),
    ("mnist_corrupt_deflate", CLASSIFY, ["--config=experiments/configs/mnist.py",
                                         "--config.data.manual_dir={root}/mnist_bad_deflate"],
     "train-images-idx3-ubyte.gz: cannot be read"),
    ("mnist_empty_file", CLASSIFY, ["--config=experiments/configs/mnist.py",
                                    "--config.data.manual_dir={root}/mnist_empty_file"],
     "t10k-labels-idx1-ubyte.gz: not an unsigned-byte idx file"),
    ("cifar_empty_folder", CLASSIFY, ["--config=experiments/configs/cifar10.py",
                                      "--config.data.manual_dir={root}/cifar_empty"],
     "holds none of cifar-10-python.tar.gz"),
    ("cifar_truncated_tar", CLASSIFY, ["--config=experiments/configs/cifar10.py",
                                       "--config.data.manual_dir={root}/cifar_truncated"],
     "cifar-10-python.tar.gz: not a readable tar.gz"),
    ("cifar_truncated_image_tree", CLASSIFY, ["--config=experiments/configs/cifar10.py",
                                              "--config.data.manual_dir={root}/cifar_png_cut"],
     "cifar10_png.tar.gz: not a readable tar.gz"),
    ("cifar_missing_batches", CLASSIFY, ["--config=experiments/configs/cifar10.py",
                                         "--config.data.manual_dir={root}/cifar_one_batch"],
     "cifar-10-python.tar.gz: lacks"),
    ("cifar_bad_pickle", CLASSIFY, ["--config=experiments/configs/cifar10.py",
                                    "--config.data.manual_dir={root}/cifar_bad_pickle"],
     "not a CIFAR-10 python batch"),
    ("cifar_unknown_class", CLASSIFY, ["--config=experiments/configs/cifar10.py",
                                       "--config.data.manual_dir={root}/cifar_zebra"],
     "unknown class folder 'zebra'"),
    ("cifar_not_an_image", CLASSIFY, ["--config=experiments/configs/cifar10.py",
                                      "--config.data.manual_dir={root}/cifar_text_png"],
     "0.png is not a readable image"),
    ("svhn_not_mat", CLASSIFY, ["--config=experiments/configs/svhn.py",
                                "--config.data.manual_dir={root}/svhn_garbage"],
     "not an SVHN format-2 .mat file"),
    ("camvid_no_lists", SEGMENT, ["--config=experiments/configs/camvid.py",
                                  "--config.data.manual_dir={root}/camvid_empty"],
     "train.txt is missing"),
    ("camvid_missing_image", SEGMENT, ["--config=experiments/configs/camvid.py",
                                       "--config.data.manual_dir={root}/camvid_missing"],
     "f1.png: file not found"),
    ("camvid_label_out_of_range", SEGMENT, ["--config=experiments/configs/camvid.py",
                                            "--config.data.manual_dir={root}/camvid_label_13"],
     "label 13 at index 0 is out of range 0..11"),
    ("camvid_size_mismatch", SEGMENT, ["--config=experiments/configs/camvid.py",
                                       "--config.data.manual_dir={root}/camvid_sizes"],
     "sizes"),
    ("camvid_bad_list_line", SEGMENT, ["--config=experiments/configs/camvid.py",
                                       "--config.data.manual_dir={root}/camvid_bad_line"],
     "train.txt line 2: expected two paths"),
    ("camvid_corrupt_png", SEGMENT, ["--config=experiments/configs/camvid.py",
                                     "--config.data.manual_dir={root}/camvid_corrupt"],
     "f0.png: not a readable image"),
    ("horse_no_masks", SEGMENT, ["--config=experiments/configs/weizmann_horse.py",
                                 "--config.data.manual_dir={root}/horse_no_masks"],
     "must hold rgb/ (or gray/) and"),
    ("horse_unmatched_mask", SEGMENT, ["--config=experiments/configs/weizmann_horse.py",
                                       "--config.data.manual_dir={root}/horse_unmatched"],
     "has no image with stem"),
    ("horse_corrupt_mask", SEGMENT, ["--config=experiments/configs/weizmann_horse.py",
                                     "--config.data.manual_dir={root}/horse_corrupt"],
     "horse003.png: not a readable image"),
    # Files cut short part-way (a download or copy that stopped): one line naming them.
    ("horse_truncated_image", SEGMENT, ["--config=experiments/configs/weizmann_horse.py",
                                        "--config.data.manual_dir={root}/horse_cut"],
     "horse002.png: not a readable image"),
    ("camvid_truncated_label", SEGMENT, ["--config=experiments/configs/camvid.py",
                                         "--config.data.manual_dir={root}/camvid_cut"],
     "trainannot/f1.png: not a readable image"),
    ("camvid_binary_list", SEGMENT, ["--config=experiments/configs/camvid.py",
                                     "--config.data.manual_dir={root}/camvid_binary_list"],
     "train.txt: not a text file"),
    ("image_folder_truncated_jpeg", CLASSIFY, [IMAGES, "--config.data.manual_dir={root}/i_cut"],
     "cat01.jpg: not a readable image"),
    ("folder_truncated_mask", SEGMENT, [FOLDER, "--config.data.manual_dir={root}/f_cut"],
     "im02.png: not a readable image"),
    ("folder_truncated_classes_json", SEGMENT, [FOLDER,
                                                "--config.data.manual_dir={root}/f_cut_json"],
     "classes.json: not a classes file"),
    ("folder_binary_class_dict", SEGMENT, [FOLDER,
                                           "--config.data.manual_dir={root}/f_binary_csv"],
     "class_dict.csv: not a text file"),
    # A user's classification folder (experiments/configs/image_folder.py).
    ("image_folder_empty_class", CLASSIFY, [IMAGES, "--config.data.manual_dir={root}/i_empty"],
     "owl holds no images"),
    ("image_folder_one_class", CLASSIFY, [IMAGES, "--config.data.manual_dir={root}/i_one"],
     "holds 1 class folder(s)"),
    ("image_folder_unreadable", CLASSIFY, [IMAGES, "--config.data.manual_dir={root}/i_broken"],
     "dog03.jpg: not a readable image"),
    ("image_folder_split_missing", CLASSIFY, [IMAGES, "--config.data.manual_dir={root}/i_nosplit"],
     "has split folders but none for ['test']"),
    # A user's segmentation folder (experiments/configs/segmentation_folder.py).
    ("folder_image_without_mask", SEGMENT, [FOLDER, "--config.data.manual_dir={root}/f_lonely"],
     "im03.jpg has no mask with its stem in"),
    ("folder_sizes_differ", SEGMENT, [FOLDER, "--config.data.manual_dir={root}/f_sizes"],
     "sizes differ"),
    ("folder_unknown_colour", SEGMENT, [FOLDER, "--config.data.manual_dir={root}/f_colour"],
     "im01.png: colour (0, 255, 0) at (0, 0) is not in the classes file"),
    ("folder_class_past_list", SEGMENT, [FOLDER, "--config.data.manual_dir={root}/f_index"],
     "class 2 is past the 2 classes"),
    ("folder_no_images", SEGMENT, [FOLDER, "--config.data.manual_dir={root}/f_empty"],
     "holds no images"),
    ("folder_unreadable_image", SEGMENT, [FOLDER, "--config.data.manual_dir={root}/f_broken"],
     "im04.png: not a readable image"),
    ("folder_too_few_to_split", SEGMENT, [FOLDER, "--config.data.manual_dir={root}/f_small"],
     "5 images cannot be split into train, validation (0.1) and test (0.1)"),
    ("folder_fractions", SEGMENT, [FOLDER, "--config.data.manual_dir={root}/f_small",
                                   "--config.data.val_fraction=0.6",
                                   "--config.data.test_fraction=0.5"], "leave some for training"),
    # Predict.
    ("predict_no_images", PREDICT, ["--workdir={root}/seg_run_no_checkpoint",
                                    "--images={root}/nothing/*.png", "--out={root}/out1"],
     "matches no files"),
    ("predict_not_a_run", PREDICT, ["--workdir={root}/camvid_empty",
                                    "--images={root}/images/*.png", "--out={root}/out2"],
     "is not a run directory"),
    ("predict_unknown_task", PREDICT, ["--workdir={root}/cls_run",
                                       "--images={root}/images/*.png", "--out={root}/out3"],
     "names no known task ('detection')"),
    ("predict_classification_no_checkpoint", PREDICT, [
        "--workdir={root}/cls_run_no_checkpoint", "--images={root}/images/*.png",
        "--out={root}/out6"], "no best checkpoint in"),
    ("predict_no_checkpoint", PREDICT, ["--workdir={root}/seg_run_no_checkpoint",
                                        "--images={root}/images/*.png", "--out={root}/out4"],
     "no best checkpoint in"),
    ("predict_unreadable_image", PREDICT, ["--workdir={root}/seg_run_no_checkpoint",
                                           "--images={root}/bad_images/*.png", "--out={root}/out5"],
     "broken.png: not a readable image"),
    ("predict_missing_flag", PREDICT, ["--workdir={root}/seg_run_no_checkpoint",
                                       "--images={root}/images/*.png"], "--out"),
    # Evaluate a released run folder.
    ("evaluate_not_a_run", EVALUATE, ["--workdir={root}/camvid_empty"],
     "is not a run directory"),
    ("evaluate_nothing_released", EVALUATE, ["--workdir={root}/seg_run_no_checkpoint"],
     "has no best_params.npz"),
    # Benchmarks (found by trying the flags: these printed tracebacks).
    ("bench_ab_without_values", BENCH, ["--model=experiments/configs/digits.py",
                                        "--ab=train.batch_size"], "must be FIELD=A,B"),
    ("bench_ab_unknown_field", BENCH, ["--model=experiments/configs/digits.py",
                                       "--ab=train.nofield=1,2"],
     "the config has no field 'train.nofield'"),
    ("bench_ab_bad_value", BENCH, ["--model=experiments/configs/digits.py",
                                   "--ab=train.batch_size=a,b"],
     "'a' is not a value of train.batch_size"),
    ("bench_unknown_impl", BENCH, ["--impls=fast"], "--impls: unknown ['fast']"),
    # Export.
    ("export_not_a_run", EXPORT, ["--workdir={root}/camvid_empty", "--out={root}/e1.jax"],
     "is not a run directory"),
    ("export_no_checkpoint", EXPORT, ["--workdir={root}/cls_run_no_checkpoint",
                                      "--out={root}/e2.jax"], "no best checkpoint in"),
    ("export_output_typo", EXPORT, ["--workdir={root}/cls_run_no_checkpoint",
                                    "--out={root}/e3.jax", "--output=logits"],
     "--output"),
    # Sweeps and reports.
    ("sweep_file_missing", SWEEP, ["--sweep={root}/no_sweep.py", "--workdir={root}/sweep1"],
     "No sweep file"),
    ("sweep_without_get_sweep", SWEEP, ["--sweep={root}/empty_sweep.py",
                                        "--workdir={root}/sweep2"], "defines no get_sweep()"),
    ("sweep_field_typo", SWEEP, ["--sweep={root}/typo_sweep.py", "--workdir={root}/sweep3"],
     "'model.renet.celll' is not a field"),
    ("sweep_bad_value", SWEEP, ["--sweep={root}/bad_value_sweep.py", "--workdir={root}/sweep4"],
     "model.renet.cell='lstn' is unknown (did you mean 'lstm'?"),
    ("sweep_bad_experiment", SWEEP, ["--sweep={root}/bad_experiment_sweep.py",
                                     "--workdir={root}/sweep5"], "experiment='train'"),
    ("sweep_bad_override", SWEEP, ["--sweep=launch/sweeps/digits.py", "--workdir={root}/sweep6",
                                   "--override=novalue"], "must look like field=value"),
    ("report_not_a_sweep", REPORT, ["--workdir={root}/camvid_empty"], "No sweep.json in"),
]
TRAINING = (CLASSIFY, SEGMENT, VIDEO)


def _write(path, data: bytes):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "wb") as f:
    f.write(data)


def _broken_mnist(root, name, file_key, data=None, **arrays):
  """An MNIST folder whose `file_key` file is `data` (raw bytes) or written from arrays."""
  folder = os.path.join(root, name)
  fixtures.mnist(folder)
  target = os.path.join(folder, fixtures.classification_datasets.Mnist.FILES[file_key])
  if data is not None:
    _write(target, data)
  else:
    fixtures.write_idx(target, arrays["array"])


def _make_fixtures(root):
  rng = np.random.default_rng(0)
  import gzip
  os.makedirs(os.path.join(root, "mnist_empty"))
  _broken_mnist(root, "mnist_short_header", "train_labels",
                gzip.compress(bytes([0, 0, 8, 1, 0, 0])))
  _broken_mnist(root, "mnist_bad_magic", "train_images",
                gzip.compress(bytes([0, 0, 0x0D, 3]) + bytes(12)))
  good = gzip.decompress(open(os.path.join(root, "mnist_short_header", fixtures.
                                           classification_datasets.Mnist.FILES[
                                               "train_images"]), "rb").read())
  _broken_mnist(root, "mnist_short_body", "train_images", gzip.compress(good[:-100]))
  _broken_mnist(root, "mnist_label_12", "train_labels",
                array=np.array([1, 2, 3, 12] + [0] * 56))
  _broken_mnist(root, "mnist_59_labels", "train_labels", array=np.zeros(59))
  _broken_mnist(root, "mnist_not_gzip", "train_images", b"plain bytes, not gzip")
  _broken_mnist(root, "mnist_empty_file", "test_labels", gzip.compress(b""))
  deflated = bytearray(gzip.compress(bytes(range(256)) * 64))
  deflated[20:40] = bytes(20)  # a gzip header, then a damaged deflate stream
  _broken_mnist(root, "mnist_bad_deflate", "train_images", bytes(deflated))

  os.makedirs(os.path.join(root, "cifar_empty"))
  batches = fixtures.cifar_batches(rng)
  fixtures.cifar_python_tar_gz(os.path.join(root, "cifar_truncated",
                                            "cifar-10-python.tar.gz"), batches)
  path = os.path.join(root, "cifar_truncated", "cifar-10-python.tar.gz")
  data = open(path, "rb").read()
  _write(path, data[:len(data) // 2])
  os.makedirs(os.path.join(root, "cifar_png_cut"))  # a class-folder tree's archive, cut
  path = os.path.join(root, "cifar_png_cut", "cifar10_png.tar.gz")
  with tarfile.open(path, "w:gz") as tar:
    for k in range(8):
      png = io.BytesIO()
      Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(png, "PNG")
      info = tarfile.TarInfo(f"train/cat/{k}.png")
      info.size = len(png.getvalue())
      tar.addfile(info, io.BytesIO(png.getvalue()))
  data = open(path, "rb").read()
  _write(path, data[:len(data) // 2])
  os.makedirs(os.path.join(root, "cifar_one_batch"))
  fixtures.cifar_python_tar_gz(os.path.join(root, "cifar_one_batch", "cifar-10-python.tar.gz"),
                               {"data_batch_1": batches["data_batch_1"]})
  os.makedirs(os.path.join(root, "cifar_bad_pickle"))
  with tarfile.open(os.path.join(root, "cifar_bad_pickle", "cifar-10-python.tar.gz"),
                    "w:gz") as tar:
    for name in batches:
      info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
      info.size = 9
      tar.addfile(info, io.BytesIO(b"not a pkl"))
  fixtures.save_png(os.path.join(root, "cifar_zebra", "train", "zebra", "0.png"),
                    np.zeros((32, 32, 3), np.uint8))
  _write(os.path.join(root, "cifar_text_png", "train", "cat", "0.png"), b"text")
  _write(os.path.join(root, "svhn_garbage", "train_32x32.mat"), b"garbage")
  _write(os.path.join(root, "svhn_garbage", "test_32x32.mat"), b"garbage")
  _write(os.path.join(root, "svhn_garbage", "extra_32x32.mat"), b"garbage")

  os.makedirs(os.path.join(root, "camvid_empty"))
  fixtures.camvid(os.path.join(root, "camvid_missing"))
  os.remove(os.path.join(root, "camvid_missing", "train", "f1.png"))
  fixtures.camvid(os.path.join(root, "camvid_label_13"))
  fixtures.save_png(os.path.join(root, "camvid_label_13", "trainannot", "f0.png"),
                    np.full((6, 8), 13, np.uint8))
  fixtures.camvid(os.path.join(root, "camvid_sizes"))
  fixtures.save_png(os.path.join(root, "camvid_sizes", "trainannot", "f0.png"),
                    np.zeros((4, 4), np.uint8))
  fixtures.camvid(os.path.join(root, "camvid_bad_line"))
  with open(os.path.join(root, "camvid_bad_line", "train.txt"), "a") as f:
    f.write("only_one_path.png\n")
  with open(os.path.join(root, "camvid_bad_line", "train.txt")) as f:
    lines = f.read().splitlines()
  with open(os.path.join(root, "camvid_bad_line", "train.txt"), "w") as f:
    f.write("\n".join([lines[0], lines[-1]] + lines[1:-1]) + "\n")  # the bad line second
  sizes = (("train", 5), ("val", 5), ("test", 5))
  fixtures.camvid(os.path.join(root, "video_sizes"), sizes, frame_names=True)
  fixtures.save_png(os.path.join(root, "video_sizes", "trainannot", "0001TP_006720.png"),
                    np.zeros((4, 4), np.uint8))
  fixtures.camvid(os.path.join(root, "video_short"), (("train", 4), ("val", 5), ("test", 5)),
                  frame_names=True)
  fixtures.camvid(os.path.join(root, "camvid_corrupt"))
  _write(os.path.join(root, "camvid_corrupt", "train", "f0.png"), b"\x89PNG broken")

  images = lambda name, **kw: fixtures.image_folder(os.path.join(root, name), **kw)
  images("i_empty", per_class=4)
  for name in os.listdir(os.path.join(root, "i_empty", "owl")):
    os.remove(os.path.join(root, "i_empty", "owl", name))
  images("i_one", per_class=4, classes=("cat",))
  images("i_broken", per_class=4)
  _write(os.path.join(root, "i_broken", "dog", "dog03.jpg"), b"not a jpeg")
  images("i_nosplit", per_class=2, split_folders=True)
  import shutil
  shutil.rmtree(os.path.join(root, "i_nosplit", "test"))
  folder = lambda name, **kw: fixtures.segmentation_folder(os.path.join(root, name), n=6, **kw)
  folder("f_lonely")
  os.remove(os.path.join(root, "f_lonely", "masks", "im03.png"))
  folder("f_sizes")
  fixtures.save_png(os.path.join(root, "f_sizes", "masks", "im02.png"),
                    np.zeros((5, 7, 3), np.uint8))
  folder("f_colour")
  fixtures.save_png(os.path.join(root, "f_colour", "masks", "im01.png"),
                    np.full((40, 40, 3), (0, 255, 0), np.uint8))
  folder("f_index", masks="index")
  _write(os.path.join(root, "f_index", "classes.txt"), b"background\nred\n")
  folder("f_empty")
  for name in os.listdir(os.path.join(root, "f_empty", "images")):
    os.remove(os.path.join(root, "f_empty", "images", name))
  folder("f_broken")
  _write(os.path.join(root, "f_broken", "images", "im04.png"), b"not a png")
  fixtures.segmentation_folder(os.path.join(root, "f_small"), n=5)

  def cut(path):  # the first half of the file's bytes
    with open(path, "rb") as f:
      data = f.read()
    _write(path, data[:len(data) // 2])
  fixtures.weizmann_horse(os.path.join(root, "horse_cut"))
  cut(os.path.join(root, "horse_cut", "rgb", "horse002.png"))
  fixtures.camvid(os.path.join(root, "camvid_cut"))
  cut(os.path.join(root, "camvid_cut", "trainannot", "f1.png"))
  fixtures.camvid(os.path.join(root, "camvid_binary_list"))
  _write(os.path.join(root, "camvid_binary_list", "train.txt"), b"\xff\xfe\x00\x81 \xc3\x28\n")
  images("i_cut", per_class=4)
  cut(os.path.join(root, "i_cut", "cat", "cat01.jpg"))
  folder("f_cut")
  cut(os.path.join(root, "f_cut", "masks", "im02.png"))
  folder("f_cut_json")
  cut(os.path.join(root, "f_cut_json", "classes.json"))
  folder("f_binary_csv")
  os.remove(os.path.join(root, "f_binary_csv", "classes.json"))
  _write(os.path.join(root, "f_binary_csv", "class_dict.csv"), b"name,r,g,b\n\xff\xfe\x81,1,2,3\n")
  fixtures.weizmann_horse(os.path.join(root, "horse_no_masks"))
  import shutil
  shutil.rmtree(os.path.join(root, "horse_no_masks", "figure_ground"))
  fixtures.weizmann_horse(os.path.join(root, "horse_unmatched"))
  os.remove(os.path.join(root, "horse_unmatched", "rgb", "horse004.png"))
  fixtures.weizmann_horse(os.path.join(root, "horse_corrupt"))
  _write(os.path.join(root, "horse_corrupt", "figure_ground", "horse003.png"), b"not png")

  for name, data in (("garbage.pth", b"garbage"), ("garbage.npz", b"garbage"),
                     ("garbage.h5", b"garbage"), ("weights.bin", b"garbage")):
    _write(os.path.join(root, name), data)
  _write(os.path.join(root, "a_file"), b"a file where a workdir should be")
  seed1 = digits_config.get_config()
  seed1.seed = 1
  _write(os.path.join(root, "seed1_run", "config.json"), json.dumps(seed1.to_dict()).encode())
  os.makedirs(os.path.join(root, "busy_run"))
  _write(os.path.join(root, "cls_run", "config.json"),
         json.dumps(digits_config.get_config().to_dict()).encode())
  _write(os.path.join(root, "cls_run", "task.json"), b'{"task": "detection"}')
  _write(os.path.join(root, "cls_run_no_checkpoint", "config.json"),
         json.dumps(digits_config.get_config().to_dict()).encode())
  _write(os.path.join(root, "cls_run_no_checkpoint", "task.json"),
         b'{"task": "classification"}')
  _write(os.path.join(root, "seg_run_no_checkpoint", "config.json"),
         json.dumps(digits_seg_config.get_config().to_dict()).encode())
  _write(os.path.join(root, "seg_run_no_checkpoint", "task.json"),
         b'{"task": "segmentation"}')
  fixtures.save_png(os.path.join(root, "images", "a.png"), np.zeros((8, 8, 3), np.uint8))
  _write(os.path.join(root, "bad_images", "broken.png"), b"not an image")

  def sweep(name, body):
    _write(os.path.join(root, name), body.encode())

  sweep("empty_sweep.py", "x = 1\n")
  header = "from launch import spec\ndef get_sweep():\n  return spec.Sweep("
  sweep("typo_sweep.py", header + "experiment='classify', config='experiments/configs/"
        "digits.py', grid={'model.renet.celll': ['gru']})\n")
  sweep("bad_value_sweep.py", header + "experiment='classify', config='experiments/configs/"
        "digits.py', grid={'model.renet.cell': ['gru', 'lstn']})\n")
  sweep("bad_experiment_sweep.py", header + "experiment='train', config='experiments/"
        "configs/digits.py')\n")


def _snapshot(root):
  """{relative path: sha1 of the bytes, or "dir"} of everything under root."""
  out = {}
  for folder, dirs, names in os.walk(root):
    rel = os.path.relpath(folder, root)
    out[rel] = "dir"
    for name in names:
      with open(os.path.join(folder, name), "rb") as f:
        out[os.path.join(rel, name)] = hashlib.sha1(f.read()).hexdigest()
  return out


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
  """Runs every case once; returns ({id: {"status", "output"}}, root, snapshots)."""
  root = str(tmp_path_factory.mktemp("bad_inputs"))
  _make_fixtures(root)
  cases = []
  for case_id, module, args, _ in CASES:
    args = [a.replace("{root}", root) for a in args]
    if module in TRAINING:
      if not any(a.startswith("--workdir") for a in args):
        args.append(f"--workdir={root}/runs/{case_id}")
      args.append(f"--config.data.data_dir={root}/tfds")
    cases.append({"module": module, "args": args, "cwd": REPO})
  # The busy workdir's lock is held by this process while the cases run.
  lock = open(os.path.join(root, "busy_run", ".lock"), "w")
  fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
  lock.write(str(os.getpid()))
  lock.flush()
  # The embedded datasets that cases with good data but a bad option prepare first
  # (valid data, reused by every later run); everything else, tfds/ included, must
  # stay as it was.
  from renet_jax.data import registry
  for name in ("digits", "digits_seg", "moving_digits_seg"):
    registry.prepare(name, data_dir=os.path.join(root, "tfds"))
  before = _snapshot(root)
  try:
    results = cli_runner.run_commands(cases, os.path.dirname(root))
  finally:
    lock.close()
  return ({c[0]: r for c, r in zip(CASES, results)}, root, before, _snapshot(root))


def test_there_are_enough_cases():
  assert len(CASES) >= 60 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.slow
@pytest.mark.parametrize("case_id,module,args,expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_one_line_and_status_2(outcomes, case_id, module, args, expected):
  results, root, _, _ = outcomes
  result = results[case_id]
  lines = [line for line in result["output"].splitlines() if line.strip()]
  assert result["status"] == 2, result["output"][-3000:]
  assert len(lines) == 1 and lines[0].startswith("error: "), result["output"][-3000:]
  assert expected.replace("{root}", root) in lines[0]
  if module in TRAINING and not any(a.startswith("--workdir") for a in args):
    assert not os.path.exists(os.path.join(root, "runs", case_id))


@pytest.mark.slow
def test_bad_inputs_change_no_file(outcomes):
  _, root, before, after = outcomes
  changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
  # Allowed: statistics of the valid embedded datasets, computed on first use by the
  # cases whose data is good (split fingerprints, image statistics, class frequencies).
  derived = re.compile(r"tfds/(digits|digits_seg|moving_digits_seg)/[0-9.]+/"
                       r"(fingerprints\.json|image_stats_[\w.]+\.npz|class_frequencies\.json)$")
  changed = [k for k in changed if not (derived.match(k) and k not in before)]
  assert not changed, "\n".join(changed)
