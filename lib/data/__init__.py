"""The data layer: video decoding, clip sampling, spatial policies, UCF101 and the synthetic set.

Modules:
- :mod:`lib.data.video` - the one decord reader wrapper (layout (C, T, H, W), float32, [-1, 1]).
- :mod:`lib.data.clips` - 16-frame/16-fps clip sampling by timestamps, and the official mode.
- :mod:`lib.data.spatial` - resize+centre-crop bucket or resize+pad-to-32 policies.
- :mod:`lib.data.ucf101` - official split lists, folds, group-disjoint validation, integrity.
- :mod:`lib.data.download` - resumable, verified download and extraction of the official archives.
- :mod:`lib.data.synth` - the embedded synthetic action dataset in UCF101's layout.
- :mod:`lib.data.synth_ucf101` - a UCF101 stand-in in the exact official layout (names, lists, format).
- :mod:`lib.data.video_writer` - atomic video writing (PyAV).
- :mod:`lib.data.errors` - typed errors naming the file and the fix.

CLI: ``python -m lib.data {summary,report,synth,download} --help``.
"""
