-- photdb 0013: each reference image's own magnitude of every source of a reference set.
-- depends: 0009.galsources-layout
--
-- A reference set's catalogue combines its images' magnitudes per source (median
-- with outlier rejection, photdb.pipeline.combine). The per-image values are kept
-- here so that a reference outlier (galrefstats.ref_outlier) can be re-measured from
-- the set's other images: an offset every image shares lies in the reference nights
-- (or the star changed before the search epochs); one the others do not share lies in
-- the primary. One row per source and image; NULL mag where the image did not measure
-- it. Deleting the reference image deletes its rows (no key on galsources: a foreign
-- key there would cost a lookup per deleted measurement).

CREATE TABLE galrefmembers (
    refsource_id bigint NOT NULL,
    reference_image integer NOT NULL REFERENCES galimages (id) ON DELETE CASCADE,
    member_image integer NOT NULL,
    mag real,
    magerr real,
    PRIMARY KEY (refsource_id, member_image)
);
CREATE INDEX galrefmembers_reference_idx ON galrefmembers (reference_image);
COMMENT ON TABLE galrefmembers IS
    'per reference source of a reference set: the magnitude each reference image measured';
COMMENT ON COLUMN galrefmembers.member_image IS
    'galimages.id of the image (the primary itself is one of them)';
