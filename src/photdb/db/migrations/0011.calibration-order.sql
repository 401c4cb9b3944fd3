-- photdb 0011: the order of the photometric correction used per search image.
-- depends: 0004.pipeline-extras
--
-- The Δmag(x, y) Chebyshev surface is lowered from the configured order (4) as far
-- as a constant when a sparse image's calibration stars cannot support it (enough
-- stars per coefficient after clipping); the order used is recorded here (NULL:
-- not a search image, or processed before this migration).

ALTER TABLE galimages ADD COLUMN calib_order smallint
    CHECK (calib_order IS NULL OR calib_order >= 0);
COMMENT ON COLUMN galimages.calib_order IS
    'order of the Chebyshev Δmag surface used by the calibration (0: a constant)';
