"""The ``upsampler`` command-line interface (installed as the ``upsampler_cli`` package)."""
