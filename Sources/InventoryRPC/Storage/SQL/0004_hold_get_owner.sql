-- hold.get checks the hold's owner like release and purchase do (issue 12, rule 7): with p_user_id, a hold
-- of another user is `not_owned` (HOLD_NOT_OWNED); NULL p_user_id is an admin's (or the core's own) read.
-- The core decides who may leave the user out (decision 0011); this function only compares.
DROP FUNCTION inventory_get_hold(text);

-- hold.get: outcome ok | not_found | not_owned.
CREATE FUNCTION inventory_get_hold(p_hold_id text, p_user_id text)
RETURNS inventory_hold_result LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT CASE WHEN p_user_id IS NOT NULL AND h.user_id <> p_user_id
                                 THEN inventory_outcome('not_owned')
                                 ELSE inventory_result('ok', h) END
                       FROM holds h WHERE h.hold_id = p_hold_id),
                    inventory_outcome('not_found'))
$$;
