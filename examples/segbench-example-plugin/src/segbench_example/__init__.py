"""An example segbench plugin: the ``tiny-fcn`` method (:mod:`.network`) and the ``stripes``
dataset (:mod:`.stripes`), registered by the entry points of this package's pyproject.toml,
and a method registered by none (:mod:`.colour`), run by its import spec."""
