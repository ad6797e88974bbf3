-- name: space_vectors
-- purpose: the concept vectors of one space in WordNet order: concepts sorted by their
--   hypernym path (root first), so that concepts under the same hypernym sit together (the
--   order of the report's similarity heatmaps); concepts without a WordNet id follow, by id.
--   For an RDM space (kind rdm) each vector holds the concept's row of every subject's
--   dissimilarity matrix, side by side.
-- param: space VARCHAR = NULL  the space (required: NULL gives no rows)
-- columns: space, kind, concept, name, wnid, lexname, hypernym_path, vector
SELECT
    v.space,
    s.kind,
    v.concept,
    c.name,
    c.wnid,
    c.lexname,
    c.hypernym_path,
    v.vector
FROM vectors AS v
JOIN spaces AS s ON s.name = v.space
LEFT JOIN concepts AS c ON c.concept = v.concept
WHERE v.space = CAST($space AS VARCHAR) AND v.image_id IS NULL
ORDER BY c.hypernym_path NULLS LAST, v.concept
