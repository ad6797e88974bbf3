-- name: stale_results
-- purpose: Stored results (RSA, 2 vs 2, recovery, CKA, k-NN, regression 2 vs 2, plugins) whose
--   inputs are no longer the spaces' current content (a word space replaced by a new
--   version, a layer re-extracted with another pooling) or whose spaces are gone, and RSA
--   and 2 vs 2 results against an RDM stored by the superseded method (against minus the
--   subjects' mean RDM, before per-subject evaluation). They stay
--   queryable as history and are never shown as current. Each row names what changed, the
--   sweeps that list the result, and the command that computes its current counterpart:
--   it repeats every option the stored analysis was made with, and every name and option
--   value in it is single-quoted for a POSIX shell (a quote inside becomes '\''), so a pasted
--   command runs nothing but semwh.
-- param: space VARCHAR = NULL  only results involving this space (NULL: every space)
-- columns: test, result_id, space_a, space_b, changed, sweeps, created_at, refresh_command
WITH quoted AS (
    SELECT m.measure, m.result_id,
        CASE m.measure WHEN 'cka' THEN ' --estimator ' || '''' || replace(m.estimator, '''', '''\''''') || ''''
            WHEN 'knn' THEN ' --k ' || CAST(m.k AS VARCHAR)
            WHEN 'reg2v2' THEN ' --regression-distance ' || '''' || replace(m.distance, '''', '''\''''') || ''''
                || ' --penalties '
                || '''' || replace(replace(replace(replace(m.penalties, '[', ''), ']', ''), ' ', ''), '''', '''\''''') || ''''
            -- A plugin measure: each of its own options as -o MEASURE.OPTION=VALUE.
            ELSE array_to_string(list_transform(json_keys(x.options), lambda k:
                ' -o ' || '''' || replace(m.measure || '.' || k || '=' || replace(replace(x.options->>k, '[', ''), ']', ''), '''', '''\''''') || ''''), '')
            END AS sweep_options,
        -- The same options for `semwh analyze compare --measure NAME`: -o OPTION=VALUE.
        CASE WHEN m.measure NOT IN ('cka', 'knn', 'reg2v2') THEN
            array_to_string(list_transform(json_keys(x.options), lambda k:
                ' -o ' || '''' || replace(k || '=' || replace(replace(x.options->>k, '[', ''), ']', ''), '''', '''\''''') || ''''), '')
            END AS own_options
    FROM results_measures AS m
    JOIN results AS x ON x.result_id = m.result_id
), r AS (
    SELECT '2v2' AS test, result_id, space_a, space_b, space_a_sha256, space_b_sha256,
        n_permutations, seed, created_at, target,
        ' --similarity ' || '''' || replace(similarity, '''', '''\''''') || '''' || ' --distance ' || '''' || replace(distance, '''', '''\''''') || ''''
            || ' --tie-tol ' || CAST(tie_tol AS VARCHAR)
            || CASE WHEN bootstrap > 0 THEN ' --bootstrap ' || CAST(bootstrap AS VARCHAR)
                || coalesce(' --bootstrap-seed ' || CAST((SELECT x.bootstrap_seed FROM results AS x
                    WHERE x.result_id = v.result_id) AS VARCHAR), '')
                ELSE '' END
            || CASE WHEN target LIKE 'subjects:%' AND target <> 'subjects:none' THEN ' --normalise ' || split_part(target, ':', 2) ELSE '' END AS options,
        ' --tie-tol ' || CAST(tie_tol AS VARCHAR) || CASE WHEN target LIKE 'subjects:%' AND target <> 'subjects:none' THEN ' --normalise ' || split_part(target, ':', 2) ELSE '' END
            || CASE WHEN bootstrap > 0 THEN ' --bootstrap ' || CAST(bootstrap AS VARCHAR) ELSE '' END
            AS sweep_options
    FROM results_2v2 AS v
    UNION ALL
    SELECT 'rsa', result_id, space_a, space_b, space_a_sha256, space_b_sha256,
        n_permutations, seed, created_at, target,
        ' --similarity ' || '''' || replace(similarity, '''', '''\''''') || '''' || ' --method ' || '''' || replace(method, '''', '''\''''') || ''''
            || CASE WHEN bootstrap > 0 THEN ' --bootstrap ' || CAST(bootstrap AS VARCHAR)
                || coalesce(' --bootstrap-seed ' || CAST((SELECT x.bootstrap_seed FROM results AS x
                    WHERE x.result_id = v.result_id) AS VARCHAR), '')
                ELSE '' END
            || CASE WHEN target LIKE 'subjects:%' AND target <> 'subjects:none' THEN ' --normalise ' || split_part(target, ':', 2) ELSE '' END,
        CASE WHEN target LIKE 'subjects:%' AND target <> 'subjects:none' THEN ' --normalise ' || split_part(target, ':', 2) ELSE '' END
            || CASE WHEN bootstrap > 0 THEN ' --bootstrap ' || CAST(bootstrap AS VARCHAR) ELSE '' END
        FROM results_rsa AS v
    UNION ALL
    SELECT 'recovery', result_id, space_a, space_b, space_a_sha256, space_b_sha256,
        n_permutations, seed, created_at, NULL, '', '' FROM results_recovery
    UNION ALL
    SELECT m.measure, m.result_id, space_a, space_b, space_a_sha256, space_b_sha256,
        n_permutations, seed, created_at, NULL,
        -- A sweep's --tie-tol is the 2 vs 2 one: its regression 2 vs 2 keeps the default.
        coalesce(q.own_options, q.sweep_options || CASE WHEN m.measure = 'reg2v2'
            THEN ' --tie-tol ' || CAST(m.tie_tol AS VARCHAR) ELSE '' END),
        q.sweep_options
    FROM results_measures AS m
    JOIN quoted AS q ON q.measure = m.measure AND q.result_id = m.result_id
), judged AS (
    SELECT r.*, a.kind AS kind_a, a.model AS model_a,
        CASE WHEN a.name IS NULL THEN 'space_a removed'
            WHEN r.space_a_sha256 IS NULL OR r.space_a_sha256 <> a.content_sha256
                THEN 'space_a changed' END AS change_a,
        CASE WHEN b.name IS NULL THEN 'space_b removed'
            WHEN r.space_b_sha256 IS NULL OR r.space_b_sha256 <> b.content_sha256
                THEN 'space_b changed' END AS change_b,
        CASE WHEN r.test IN ('rsa', '2v2') AND b.kind = 'rdm' AND r.target IS NULL
            THEN 'method superseded (mean RDM; now per subject)' END AS change_method
    FROM r
    LEFT JOIN spaces AS a ON a.name = r.space_a
    LEFT JOIN spaces AS b ON b.name = r.space_b
), listed AS (
    SELECT test, result_id, string_agg(CAST(sweep_id AS VARCHAR), ',' ORDER BY sweep_id) AS sweeps
    FROM sweep_members GROUP BY test, result_id
)
SELECT
    j.test,
    j.result_id,
    j.space_a,
    j.space_b,
    concat_ws(', ', j.change_a, j.change_b, j.change_method) AS changed,
    l.sweeps,
    j.created_at,
    CASE
        WHEN j.test = 'recovery' THEN
            'semwh analyze recovery --model ' || '''' || replace(coalesce(j.model_a, '?'), '''', '''\''''') || ''''
            || ' --words ' || '''' || replace(j.space_b, '''', '''\''''') || ''''
        WHEN l.sweeps IS NOT NULL AND j.kind_a = 'layer' THEN
            'semwh analyze sweep --models '
            || '''' || replace(regexp_replace(coalesce(j.model_a, '?'), '-random$', ''), '''', '''\''''') || ''''
            || ' --words ' || '''' || replace(j.space_b, '''', '''\''''') || '''' || ' --tests ' || j.test
            || ' --permutations ' || CAST(j.n_permutations AS VARCHAR)
            || coalesce(' --seed ' || CAST(s.seed AS VARCHAR), '') || j.sweep_options
        ELSE
            'semwh analyze '
            || CASE WHEN j.test IN ('rsa', '2v2', 'cka', 'knn', 'reg2v2') THEN j.test
                ELSE 'compare --measure ' || j.test END
            || ' --a ' || '''' || replace(j.space_a, '''', '''\''''') || '''' || ' --b ' || '''' || replace(j.space_b, '''', '''\''''') || ''''
            || ' --permutations ' || CAST(j.n_permutations AS VARCHAR)
            || coalesce(' --seed ' || CAST(j.seed AS VARCHAR), '') || j.options
    END AS refresh_command
FROM judged AS j
LEFT JOIN listed AS l ON l.test = j.test AND l.result_id = j.result_id
LEFT JOIN sweeps AS s ON s.sweep_id = TRY_CAST(split_part(l.sweeps, ',', -1) AS BIGINT)
WHERE (j.change_a IS NOT NULL OR j.change_b IS NOT NULL
        OR j.change_method IS NOT NULL)
    AND (CAST($space AS VARCHAR) IS NULL OR CAST($space AS VARCHAR) IN (j.space_a, j.space_b))
ORDER BY j.space_a, j.space_b, j.test, j.result_id
