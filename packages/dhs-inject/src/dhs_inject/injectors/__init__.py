"""Injection models registered with ``register_injectors``.

Injector impl protocol: ``impl(config)`` returns an object with
``inject(hosts, host_meta, rng) -> dhs_inject.engine.InjectionBatch`` where ``hosts`` is a float32
(N, 3, H, W) array of g, r, z cutouts in nanomaggies, ``host_meta`` a dict of (N,) arrays
(``psfsize_r`` required; ``psfdepth_r``, ``type_bin``, ``galaxy_id`` used when present) and ``rng``
a ``numpy.random.Generator``. One injection is attempted per host slot; a failed attempt (non-finite
host, unsuitable host, non-finite result) is retried on a new host up to ``max_retries`` times and
counted in ``failures`` by reason; failed attempts never reach the output arrays.
"""
