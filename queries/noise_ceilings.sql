-- name: noise_ceilings
-- purpose: the RSA noise ceiling of each RDM space (`semwh ingest rdm`) over its concepts:
--   lower bound (each subject predicted by the mean of the others) and upper bound (by the
--   mean of all), as rsatoolbox computes them, for the current content of the space only.
-- param: space VARCHAR = NULL  only this RDM space (NULL: every one)
-- columns: space, method, n_concepts, n_subjects, lower, upper
SELECT
    n.space,
    n.method,
    n.n_concepts,
    n.n_subjects,
    n.lower,
    n.upper
FROM noise_ceilings AS n
JOIN spaces AS s ON s.name = n.space AND s.content_sha256 = n.space_sha256
WHERE CAST($space AS VARCHAR) IS NULL OR n.space = CAST($space AS VARCHAR)
ORDER BY n.space, n.method, n.n_concepts
