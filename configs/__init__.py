"""The embedded settings (settings.yaml) and the simulator's scenarios (scenarios/*.yaml).

A package only so that they ship inside the wheel as package data (setup.cfg's
``[options.package_data]``) and are found with ``importlib.resources``, installed or not;
``common.locations`` reads them. No code lives here. ``deploy/`` is not package data: it is
for a checkout or an image build.
"""
