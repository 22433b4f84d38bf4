"""The data layer: video decoding, clip sampling, spatial policies, UCF101 and the synthetic set.

Modules:
- :mod:`lib.data.video` - the one decord reader wrapper (layout (C, T, H, W), float32, [-1, 1]);
  :mod:`lib.data.video_damage` its rules for damaged containers, :mod:`lib.data.avi` the AVI
  container parser, :mod:`lib.data.ffmpeg_log` decord's FFmpeg log routed to Python logging,
  :mod:`lib.data.video_stream` the forward-only PyAV decoder of videos too large for decord's
  read-ahead.
- :mod:`lib.data.clips` - 16-frame/16-fps clip sampling by timestamps, and the official mode.
- :mod:`lib.data.spatial` - resize+centre-crop bucket or resize+pad-to-32 policies.
- :mod:`lib.data.ucf101` - official split lists, folds, group-disjoint validation.
- :mod:`lib.data.ucf101_report` - integrity report and summary of one fold of a dataset root.
- :mod:`lib.data.download` - download and extraction of the official archives
  (:mod:`lib.data.download_http` one resumable, verified file; :mod:`lib.data.download_extract`
  atomic extraction).
- :mod:`lib.data.synth` - the embedded synthetic action dataset in UCF101's layout.
- :mod:`lib.data.synth_ucf101` - a UCF101 stand-in in the exact official layout (names, lists, format).
- :mod:`lib.data.video_writer` - atomic video writing (PyAV).
- :mod:`lib.data.errors` - typed errors naming the file and the fix.

CLI: ``python -m lib.data {summary,report,synth,download} --help``.
"""
