"""The web page of ``upsampler serve``: a local Gradio app over the same :class:`Upscaler` as the
CLI (docs/ui.md).

:mod:`upsampler.ui.jobs` runs one request (decode with the pixel limit, upscale, write the
downloads, zip a batch) and knows nothing of Gradio; :mod:`upsampler.ui.app` builds the page
and launches it, and needs ``pip install 'upsampler[ui]'``. Nothing is imported here, so
``import upsampler.ui`` stays light.
"""
