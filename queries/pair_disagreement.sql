-- name: pair_disagreement
-- purpose: the concept pairs on which two spaces disagree most: the pairs that drive a 2 vs 2
--   result. Over the concepts both spaces hold (concept vectors: rows of the `vectors` view
--   with image_id NULL), for every pair i < j the Pearson similarity of the two concepts'
--   vectors is computed in each space (cosine of the mean-centred vectors, the default
--   similarity of the analyses). Each space's pair similarities are standardised over all
--   shared pairs (z = (sim - mean) / sd, population sd), so spaces with different similarity
--   ranges compare; disagreement = z_a - z_b (positive: closer in space_a than in space_b).
--   The `top` pairs with the largest |disagreement| are listed, largest first.
-- param: space_a VARCHAR = required  first space (e.g. a layer space MODEL/LAYER)
-- param: space_b VARCHAR = required  second space (e.g. a word space)
-- param: top INTEGER = 20  how many pairs to list
-- range: top = [1, ]
-- columns: concept_1, name_1, concept_2, name_2, similarity_a, similarity_b, z_a, z_b,
--   disagreement, n_concepts
WITH va AS (
    SELECT concept, list_transform(vector, lambda x: x - list_avg(vector)) AS v
    FROM vectors WHERE space = CAST($space_a AS VARCHAR) AND image_id IS NULL
), vb AS (
    SELECT concept, list_transform(vector, lambda x: x - list_avg(vector)) AS v
    FROM vectors WHERE space = CAST($space_b AS VARCHAR) AND image_id IS NULL
), shared AS (
    SELECT va.concept, va.v AS a, vb.v AS b FROM va JOIN vb USING (concept)
), pairs AS (
    SELECT
        x.concept AS concept_1,
        y.concept AS concept_2,
        list_cosine_similarity(x.a, y.a) AS similarity_a,
        list_cosine_similarity(x.b, y.b) AS similarity_b
    FROM shared AS x JOIN shared AS y ON x.concept < y.concept
), z AS (
    SELECT *,
        (similarity_a - avg(similarity_a) OVER ()) / stddev_pop(similarity_a) OVER () AS z_a,
        (similarity_b - avg(similarity_b) OVER ()) / stddev_pop(similarity_b) OVER () AS z_b
    FROM pairs
)
SELECT
    z.concept_1,
    c1.name AS name_1,
    z.concept_2,
    c2.name AS name_2,
    z.similarity_a,
    z.similarity_b,
    z.z_a,
    z.z_b,
    z.z_a - z.z_b AS disagreement,
    (SELECT count(*) FROM shared) AS n_concepts
FROM z
LEFT JOIN concepts AS c1 ON c1.concept = z.concept_1
LEFT JOIN concepts AS c2 ON c2.concept = z.concept_2
ORDER BY abs(z.z_a - z.z_b) DESC, z.concept_1, z.concept_2
LIMIT CAST($top AS INTEGER)
