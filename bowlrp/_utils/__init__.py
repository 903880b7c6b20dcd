"""Helpers every layer may use, none of bowlrp's pipeline: atomic writes (:mod:`.atomic`),
output-folder locks (:mod:`.lock`), parallel maps (:mod:`.parallel`), BLAS thread limits
(:mod:`.threads`), bounded image reading and argument checks (:mod:`.validation`,
:mod:`.image_header`). Private: the names here may change without notice."""
