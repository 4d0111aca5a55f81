"""Readers and writers of the formats ``clonekit.data.convert`` converts between, one module per format.

Every conversion goes through one in-between form, ``clonekit.data.formats.source.Source``: a reader turns the
source into a ``Source`` (the clonekit header plus an iterator over episodes), a writer turns a ``Source`` into
the destination. ``clonekit`` is the native format; ``hdf5`` (robomimic-style), ``minari`` and ``d4rl`` (flat
HDF5) are the foreign ones; ``infer`` derives stream specs and spaces from the arrays of a foreign file, and
``gym_id`` finds the registered gymnasium env a dataset's env block names (robomimic ``env_args``, Minari
``env_spec``).
"""
