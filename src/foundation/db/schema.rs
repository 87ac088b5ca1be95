//! Diesel's view of the tables; written by hand to match `migrations/postgres` and
//! `migrations/sqlite`, which create the same columns on each backend.

diesel::table! {
    subscribers (id) {
        id -> BigInt,
        email -> Text,
        name -> Nullable<Text>,
        status -> Text,
        topics -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        confirmed_at -> Nullable<Timestamp>,
        unsubscribed_at -> Nullable<Timestamp>,
        unsubscribed_via -> Nullable<Text>,
        erased_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    consents (id) {
        id -> BigInt,
        subscriber_id -> BigInt,
        requested_at -> Timestamp,
        ip -> Text,
        user_agent -> Text,
        source -> Text,
        consent_text_version -> Text,
        name -> Nullable<Text>,
        topics -> Text,
        confirmed_at -> Nullable<Timestamp>,
        confirmed_ip -> Nullable<Text>,
    }
}

diesel::table! {
    confirmation_tokens (id) {
        id -> BigInt,
        subscriber_id -> BigInt,
        consent_id -> BigInt,
        token_hash -> Text,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        used_at -> Nullable<Timestamp>,
        revoked_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    deliveries (id) {
        id -> BigInt,
        kind -> Text,
        issue_id -> Nullable<BigInt>,
        subscriber_id -> BigInt,
        priority -> Integer,
        status -> Text,
        attempts -> Integer,
        next_attempt_at -> Timestamp,
        lease_until -> Nullable<Timestamp>,
        lease_owner -> Nullable<Text>,
        last_error -> Nullable<Text>,
        message_id -> Nullable<Text>,
        payload -> Nullable<Text>,
        created_at -> Timestamp,
        finished_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    data_links (id) {
        id -> BigInt,
        subscriber_id -> BigInt,
        token_hash -> Text,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        used_at -> Nullable<Timestamp>,
    }
}

diesel::joinable!(consents -> subscribers (subscriber_id));
diesel::joinable!(confirmation_tokens -> subscribers (subscriber_id));
diesel::joinable!(deliveries -> subscribers (subscriber_id));

diesel::table! {
    issues (id) {
        id -> BigInt,
        kind -> Text,
        subject -> Text,
        preheader -> Text,
        html -> Text,
        text -> Text,
        topics -> Text,
        period_key -> Nullable<Text>,
        idempotency_key -> Nullable<Text>,
        status -> Text,
        recipients -> Integer,
        created_at -> Timestamp,
        queued_at -> Nullable<Timestamp>,
        digest_id -> Nullable<BigInt>,
        audience_topics -> Nullable<Text>,
        send_at -> Nullable<Timestamp>,
        created_by -> Nullable<Text>,
        click_tracking -> Nullable<Text>,
    }
}

diesel::table! {
    api_tokens (id) {
        id -> BigInt,
        name -> Text,
        token_hash -> Text,
        created_at -> Timestamp,
        last_used_at -> Nullable<Timestamp>,
        scopes -> Nullable<Text>,
        expires_at -> Nullable<Timestamp>,
        created_by -> Nullable<Text>,
    }
}

diesel::table! {
    editors (id) {
        id -> BigInt,
        name -> Text,
        password_hash -> Text,
        created_at -> Timestamp,
        session_version -> Integer,
        role -> Text,
        disabled_at -> Nullable<Timestamp>,
        totp_secret -> Nullable<Text>,
        totp_enrolled_at -> Nullable<Timestamp>,
        totp_last_step -> Nullable<BigInt>,
    }
}

diesel::table! {
    recovery_codes (id) {
        id -> BigInt,
        editor_id -> BigInt,
        code_hash -> Text,
        used_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    editor_sessions (id) {
        id -> BigInt,
        token_hash -> Text,
        editor_id -> BigInt,
        created_at -> Timestamp,
        last_seen_at -> Timestamp,
        ip -> Text,
        user_agent -> Text,
        pending -> Nullable<Text>,
    }
}

diesel::table! {
    known_devices (id) {
        id -> BigInt,
        editor_id -> BigInt,
        token_hash -> Text,
        created_at -> Timestamp,
        last_used_at -> Timestamp,
    }
}

diesel::table! {
    audit_log (id) {
        id -> BigInt,
        at -> Timestamp,
        actor -> Text,
        ip -> Text,
        action -> Text,
        detail -> Text,
    }
}

diesel::table! {
    login_failures (id) {
        id -> BigInt,
        key -> Text,
        failed_at -> Timestamp,
    }
}

diesel::joinable!(deliveries -> issues (issue_id));
diesel::allow_tables_to_appear_in_same_query!(
    subscribers,
    consents,
    confirmation_tokens,
    data_links,
    deliveries,
    issues,
    api_tokens,
    articles,
    digests,
    feed_state,
    editors,
    login_failures
);

diesel::joinable!(editor_sessions -> editors (editor_id));
diesel::joinable!(recovery_codes -> editors (editor_id));
diesel::joinable!(known_devices -> editors (editor_id));
diesel::allow_tables_to_appear_in_same_query!(
    editors,
    editor_sessions,
    recovery_codes,
    known_devices
);

diesel::table! {
    articles (id) {
        id -> BigInt,
        guid -> Text,
        link -> Text,
        title -> Text,
        summary -> Text,
        body -> Text,
        author -> Nullable<Text>,
        categories -> Text,
        image_url -> Nullable<Text>,
        image_credit -> Nullable<Text>,
        published_at -> Timestamp,
        source -> Text,
        excluded -> Integer,
        digest_id -> Nullable<BigInt>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    digests (id) {
        id -> BigInt,
        period_key -> Text,
        cutoff -> Timestamp,
        articles -> Integer,
        created_at -> Timestamp,
        outcome -> Text,
    }
}

diesel::table! {
    feed_state (url) {
        url -> Text,
        etag -> Nullable<Text>,
        last_modified -> Nullable<Text>,
        polled_at -> Nullable<Timestamp>,
        last_error -> Nullable<Text>,
    }
}

diesel::table! {
    welcome_message (id) {
        id -> BigInt,
        enabled -> Integer,
        subject -> Text,
        body -> Text,
        updated_at -> Timestamp,
        updated_by -> Nullable<Text>,
    }
}
// Webhooks (stores::webhooks).
diesel::table! {
    webhook_endpoints (id) {
        id -> BigInt,
        url -> Text,
        secret -> Text,
        events -> Text,
        description -> Text,
        enabled -> Bool,
        created_at -> Timestamp,
        created_by -> Nullable<Text>,
    }
}

diesel::table! {
    webhook_deliveries (id) {
        id -> BigInt,
        event_id -> Text,
        event_type -> Text,
        endpoint_id -> BigInt,
        subscriber_id -> Nullable<BigInt>,
        status -> Text,
        attempts -> Integer,
        next_attempt_at -> Timestamp,
        lease_until -> Nullable<Timestamp>,
        lease_owner -> Nullable<Text>,
        last_attempt_at -> Nullable<Timestamp>,
        last_status -> Nullable<Integer>,
        last_error -> Nullable<Text>,
        payload -> Nullable<Text>,
        created_at -> Timestamp,
        finished_at -> Nullable<Timestamp>,
    }
}

diesel::joinable!(webhook_deliveries -> webhook_endpoints (endpoint_id));
diesel::allow_tables_to_appear_in_same_query!(webhook_endpoints, webhook_deliveries);

diesel::table! {
    /// Rate limits every process sees: a key's theoretical arrival time (GCRA), in ms since 1970.
    rate_limits (key) {
        key -> Text,
        tat -> BigInt,
    }
}

diesel::table! {
    /// Each issue's links in order (1..), its hidden link (0) and open image (-1), with the
    /// clicks that name no reader.
    issue_links (issue_id, position) {
        issue_id -> BigInt,
        position -> Integer,
        url -> Text,
        article_id -> Nullable<BigInt>,
        clicks -> BigInt,
        machine_clicks -> BigInt,
    }
}

diesel::table! {
    /// `personal` mode: one row per click (or open) of a delivered copy.
    clicks (id) {
        id -> BigInt,
        delivery_id -> BigInt,
        issue_id -> BigInt,
        position -> Integer,
        clicked_at -> Timestamp,
        machine -> Bool,
    }
}

diesel::allow_tables_to_appear_in_same_query!(issue_links, clicks);
diesel::allow_tables_to_appear_in_same_query!(issue_links, deliveries);
diesel::allow_tables_to_appear_in_same_query!(clicks, deliveries);
diesel::allow_tables_to_appear_in_same_query!(issue_links, issues);
diesel::allow_tables_to_appear_in_same_query!(clicks, issues);
diesel::allow_tables_to_appear_in_same_query!(issue_links, articles);
diesel::allow_tables_to_appear_in_same_query!(clicks, articles);
diesel::allow_tables_to_appear_in_same_query!(issue_links, subscribers);
diesel::allow_tables_to_appear_in_same_query!(clicks, subscribers);

diesel::table! {
    /// Re-permission: a message to the inactive readers, asking whether they still want it.
    repermission_campaigns (id) {
        id -> BigInt,
        inactive_digests -> Integer,
        days -> Integer,
        created_at -> Timestamp,
        deadline -> Timestamp,
        created_by -> Nullable<Text>,
        recipients -> Integer,
    }
}

diesel::table! {
    /// One reader asked by a re-permission campaign, and what became of it.
    repermission_requests (campaign_id, subscriber_id) {
        campaign_id -> BigInt,
        subscriber_id -> BigInt,
        status -> Text,
        answered_at -> Nullable<Timestamp>,
    }
}

diesel::joinable!(repermission_requests -> repermission_campaigns (campaign_id));
diesel::joinable!(repermission_requests -> subscribers (subscriber_id));
diesel::allow_tables_to_appear_in_same_query!(repermission_campaigns, repermission_requests);
diesel::allow_tables_to_appear_in_same_query!(repermission_requests, subscribers);
diesel::allow_tables_to_appear_in_same_query!(repermission_campaigns, subscribers);

diesel::table! {
    import_jobs (id) {
        id -> BigInt,
        file_name -> Text,
        data -> Binary,
        consent_held -> Bool,
        source -> Text,
        status -> Text,
        rows_total -> BigInt,
        rows_done -> BigInt,
        rows_imported -> BigInt,
        rows_existing -> BigInt,
        rows_rejected -> BigInt,
        errors -> Text,
        existing -> Text,
        failure -> Nullable<Text>,
        created_by -> Text,
        created_ip -> Text,
        created_at -> Timestamp,
        started_at -> Nullable<Timestamp>,
        finished_at -> Nullable<Timestamp>,
        lease_owner -> Nullable<Text>,
        lease_until -> Nullable<Timestamp>,
    }
}
