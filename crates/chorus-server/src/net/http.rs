//! The HTTP API (spec: http.md): health, stats, channel users, server broadcast, client
//! publish and the resource API, with JSON error bodies (HTTP-2).

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chorus_protocol::http::{
    ChangeReport, Health, PublishRequest, ResourceRecord, API_KEY_HEADER, IDEMPOTENCY_KEY_HEADER,
    TENANT_HEADER,
};
use chorus_protocol::{Capability, ChannelName, ErrorCode};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::auth::token_from_request;
use crate::core::{CoreError, Fault, ResourceFound, ResourceOp, ResourceRead};

use super::hub::{now_ms, Shared};
use super::query_param;

/// The API's routes (the WebSocket and SSE routes are added by [`super::router`]).
pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/api/stats", get(stats))
        .route("/api/channel/users", get(channel_users))
        .route("/api/broadcast", post(broadcast))
        .route("/api/publish", post(publish))
        .route("/api/changes", post(report_change))
        .route("/api/resources/{name}", post(create).get(list))
        .route(
            "/api/resources/{name}/{id}",
            get(read_one).put(replace).patch(patch).delete(delete),
        )
}

/// A failed request: status, code and message (HTTP-2).
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: ErrorCode,
    message: String,
    retry_after_ms: Option<u64>,
}

impl ApiError {
    /// An error with the status the spec's table gives `code`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status: status_of(code),
            code,
            message: message.into(),
            retry_after_ms: None,
        }
    }

    fn with_status(mut self, status: StatusCode) -> ApiError {
        self.status = status;
        self
    }
}

/// The status of each error code (http.md table).
pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidJson
        | ErrorCode::UnknownType
        | ErrorCode::InvalidMessage
        | ErrorCode::InvalidChannel
        | ErrorCode::BadPassword
        | ErrorCode::RoomFull
        | ErrorCode::NotSubscribed
        | ErrorCode::AlreadySubscribed => StatusCode::BAD_REQUEST,
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::Unsupported => StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::Conflict => StatusCode::CONFLICT,
        // 413 is only for an oversized body (HTTP-4); other limits are 400.
        ErrorCode::LimitExceeded => StatusCode::BAD_REQUEST,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> ApiError {
        let mut error = ApiError::new(e.code(), e.client_message());
        if let CoreError::RateLimited { retry_after_ms } = e {
            error.retry_after_ms = Some(retry_after_ms);
        }
        error
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(ms) = self.retry_after_ms {
            error["retry_after_ms"] = json!(ms);
        }
        let mut response = (self.status, Json(json!({ "error": error }))).into_response();
        if let Some(ms) = self.retry_after_ms {
            // HTTP-7: whole seconds, rounded up.
            let secs = ms.div_ceil(1000).max(1);
            if let Ok(value) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// Unknown paths: 404 `not_found`.
pub async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such endpoint")
}

/// HTTP-6: axum answers a known path with a wrong method with a bare 405 and an `Allow`
/// header; give it the JSON body.
pub async fn method_not_allowed(response: Response) -> Response {
    if response.status() != StatusCode::METHOD_NOT_ALLOWED {
        return response;
    }
    let allow = response.headers().get(header::ALLOW).cloned();
    let mut replaced =
        ApiError::new(ErrorCode::Unsupported, "method not allowed on this path").into_response();
    if let Some(allow) = allow {
        replaced.headers_mut().insert(header::ALLOW, allow);
    }
    replaced
}

async fn healthz(State(shared): State<Arc<Shared>>) -> Response {
    if shared.shutting_down() {
        // HTTP-13
        let body = json!({"status": "shutting_down"});
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    Json(Health {
        status: "ok".into(),
    })
    .into_response()
}

/// HTTP-5 and HTTP-8: the capability is announced and the API key matches; returns the
/// tenant (HTTP-9).
fn api_access(shared: &Shared, headers: &HeaderMap, capability: Capability) -> ApiResult<String> {
    if !shared.has(capability) {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "capability not announced",
        ));
    }
    let Some(expected) = shared.config.api_key.as_deref() else {
        return Err(ApiError::new(
            ErrorCode::Unauthorized,
            "no API key is configured on this server",
        ));
    };
    let given = headers.get(API_KEY_HEADER).map(|v| v.as_bytes());
    let key_ok = given.is_some_and(|given| {
        constant_time_eq(given, expected.as_bytes())
            || (shared.faults.on(Fault::ApiKeyPrefixAccepted)
                && !given.is_empty()
                && expected.as_bytes().starts_with(given))
            // SEC-14 broken on purpose: the key with anything appended is accepted.
            || (shared.faults.on(Fault::ApiKeyExtensionAccepted)
                && given.starts_with(expected.as_bytes()))
    });
    if !key_ok && !shared.faults.on(Fault::HttpApiWithoutKey) {
        return Err(ApiError::new(
            ErrorCode::Unauthorized,
            "missing or wrong API key",
        ));
    }
    let tenant = headers
        .get(TENANT_HEADER)
        .map(|v| v.to_str().map(str::to_owned))
        .transpose()
        .map_err(|_| ApiError::new(ErrorCode::InvalidMessage, "tenant header is not ASCII"))?;
    Ok(tenant.unwrap_or_default())
}

/// SEC-5: the whole key in constant time (`subtle`); only the length may show, which a
/// key's holder does not keep secret.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    bool::from(a.ct_eq(b))
}

/// Reads a JSON body of at most `max_frame_bytes` (HTTP-3, HTTP-4).
async fn json_body(shared: &Shared, body: Body) -> ApiResult<Value> {
    let limit = usize::try_from(shared.config.max_frame_bytes).unwrap_or(usize::MAX);
    let limit = limit - usize::from(shared.faults.on(Fault::BodyLimitOffByOne));
    let bytes: Bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(
            ErrorCode::LimitExceeded,
            "request body exceeds max_frame_bytes",
        )
        .with_status(StatusCode::PAYLOAD_TOO_LARGE)
    })?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::new(ErrorCode::InvalidJson, e.to_string()))
}

fn shaped<T: DeserializeOwned>(value: Value) -> ApiResult<T> {
    serde_json::from_value(value)
        .map_err(|e| ApiError::new(ErrorCode::InvalidMessage, e.to_string()))
}

async fn stats(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> ApiResult<Response> {
    let tenant = api_access(&shared, &headers, Capability::HttpApi)?;
    Ok(Json(shared.read_core(|core| core.stats(&tenant))).into_response())
}

async fn channel_users(
    State(shared): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let tenant = api_access(&shared, &headers, Capability::HttpApi)?;
    let channel = query_param(query.as_deref(), "channel")
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidMessage, "missing channel parameter"))?;
    let channel = ChannelName(channel);
    let users = shared.read_core(|core| core.channel_users(&tenant, &channel))?;
    Ok(Json(users).into_response())
}

async fn broadcast(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let tenant = api_access(&shared, &headers, Capability::HttpApi)?;
    let req: PublishRequest = shaped(json_body(&shared, body).await?)?;
    let reply = shared.with_core(|core, now| core.server_publish(&tenant, req, None, now))?;
    shared.durable().await;
    Ok(Json(reply).into_response())
}

async fn publish(
    State(shared): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    if !shared.has(Capability::HttpPublish) {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "capability not announced",
        ));
    }
    // HTTP-10: the header only; a missing token is as bad as an invalid one.
    let unauthorized = |m: String| ApiError::new(ErrorCode::Unauthorized, m);
    let query_token = query_param(query.as_deref(), "token")
        .filter(|_| shared.faults.on(Fault::PublishQueryToken));
    let token = token_from_request(&headers, query_token.as_deref())
        .map_err(|e| unauthorized(e.to_string()))?
        .ok_or_else(|| unauthorized("missing Authorization: Bearer token".into()))?;
    let session = shared
        .auth
        .verify(token, now_ms())
        .map_err(|e| unauthorized(e.to_string()))?;
    let req: PublishRequest = shaped(json_body(&shared, body).await?)?;
    // HTTP-11: the token's tenant, whatever the headers say.
    let tenant = match headers.get(TENANT_HEADER).and_then(|v| v.to_str().ok()) {
        Some(header) if shared.faults.on(Fault::PublishTenantFromHeader) => header.to_owned(),
        _ => session.tenant.clone(),
    };
    let reply =
        shared.with_core(|core, now| core.server_publish(&tenant, req, Some(&session), now))?;
    shared.durable().await;
    Ok(Json(reply).into_response())
}

/// `POST /api/changes` (CHG-13 to CHG-18, CHG-22): a change committed in the application's own
/// database, announced once per `Idempotency-Key`, answered once durable.
async fn report_change(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let tenant = api_access(&shared, &headers, Capability::DataChange)?;
    let key = headers
        .get(IDEMPOTENCY_KEY_HEADER)
        .map(|v| v.to_str())
        .transpose()
        .map_err(|_| ApiError::new(ErrorCode::InvalidMessage, "Idempotency-Key is not ASCII"))?;
    let report: ChangeReport = shaped(json_body(&shared, body).await?)?;
    let reply = shared.with_core(|core, now| core.report_change(&tenant, key, report, now))?;
    shared.durable().await;
    Ok(Json(reply).into_response())
}

/// A record body: a JSON object (HTTP-27).
async fn record_body(shared: &Shared, body: Body) -> ApiResult<Value> {
    let value = json_body(shared, body).await?;
    if !value.is_object() {
        return Err(ApiError::new(
            ErrorCode::InvalidMessage,
            "a record must be a JSON object",
        ));
    }
    Ok(value)
}

/// The body's `id` member, which must be a string when present.
fn body_id(body: &Value) -> ApiResult<Option<String>> {
    match body.get("id") {
        None => Ok(None),
        Some(Value::String(id)) => Ok(Some(id.clone())),
        Some(_) => Err(ApiError::new(
            ErrorCode::InvalidMessage,
            "id must be a string",
        )),
    }
}

/// HTTP-32: a body `id` must name the path's record.
fn same_id(body: &Value, id: &str) -> ApiResult<()> {
    match body_id(body)? {
        Some(other) if other != id => Err(ApiError::new(
            ErrorCode::InvalidMessage,
            "the body's id differs from the path's",
        )),
        _ => Ok(()),
    }
}

/// A resource write, answered once durable (group commit).
async fn write(shared: &Shared, tenant: &str, op: ResourceOp) -> ApiResult<(bool, ResourceRecord)> {
    let written = shared.with_core(|core, now| core.resource_write(tenant, op, now))?;
    shared.durable().await;
    Ok((written.created, written.record))
}

async fn create(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let tenant = api_access(&shared, &headers, Capability::DataChange)?;
    let data = record_body(&shared, body).await?;
    let id = body_id(&data)?;
    let resource = name.clone();
    let (_, record) = write(&shared, &tenant, ResourceOp::Create { resource, id, data }).await?;
    let mut response = (StatusCode::CREATED, Json(&record)).into_response();
    // HTTP-35
    let location = format!("/api/resources/{name}/{}", record.id);
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

async fn list(
    State(shared): State<Arc<Shared>>,
    Path(resource): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let tenant = api_access(&shared, &headers, Capability::DataChange)?;
    let limit = match query_param(query.as_deref(), "limit") {
        None => 100,
        Some(text) => text
            .parse::<u64>()
            .ok()
            .filter(|l| (1..=1000).contains(l))
            .ok_or_else(|| ApiError::new(ErrorCode::InvalidMessage, "limit must be 1..=1000"))?,
    };
    let after = query_param(query.as_deref(), "after");
    let named = after
        .clone()
        .filter(|_| shared.faults.on(Fault::ListAfterInclusive));
    let read = ResourceRead::List {
        resource: resource.clone(),
        limit,
        after,
    };
    let mut found = shared.read_core(|core| core.resource_read(&tenant, read))?;
    if let (Some(id), ResourceFound::List { records, .. }) = (named, &mut found) {
        let get = ResourceRead::Get { resource, id };
        if let Ok(ResourceFound::Record(r)) = shared.read_core(|c| c.resource_read(&tenant, get)) {
            records.insert(0, r);
        }
    }
    Ok(found_response(found))
}

async fn read_one(
    State(shared): State<Arc<Shared>>,
    Path((resource, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let tenant = api_access(&shared, &headers, Capability::DataChange)?;
    let read = ResourceRead::Get { resource, id };
    let found = shared.read_core(|core| core.resource_read(&tenant, read))?;
    Ok(found_response(found))
}

fn found_response(found: ResourceFound) -> Response {
    match found {
        ResourceFound::List {
            resource,
            records,
            has_more,
        } => Json(json!({"resource": resource, "records": records, "has_more": has_more}))
            .into_response(),
        ResourceFound::Record(record) => Json(record).into_response(),
    }
}

async fn replace(
    State(shared): State<Arc<Shared>>,
    Path((resource, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let tenant = api_access(&shared, &headers, Capability::DataChange)?;
    let mut data = record_body(&shared, body).await?;
    if shared.faults.on(Fault::BodyIdMismatchAccepted) {
        // The path's id wins silently, in the shell and in the core.
        data["id"] = Value::String(id.clone());
    }
    same_id(&data, &id)?;
    let (_, record) = write(&shared, &tenant, ResourceOp::Replace { resource, id, data }).await?;
    Ok(Json(record).into_response())
}

async fn patch(
    State(shared): State<Arc<Shared>>,
    Path((resource, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let tenant = api_access(&shared, &headers, Capability::DataChange)?;
    let mut data = record_body(&shared, body).await?;
    if shared.faults.on(Fault::BodyIdMismatchAccepted) {
        // The path's id wins silently, in the shell and in the core.
        data["id"] = Value::String(id.clone());
    }
    same_id(&data, &id)?;
    let (_, record) = write(&shared, &tenant, ResourceOp::Patch { resource, id, data }).await?;
    Ok(Json(record).into_response())
}

async fn delete(
    State(shared): State<Arc<Shared>>,
    Path((resource, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let tenant = api_access(&shared, &headers, Capability::DataChange)?;
    let (_, record) = write(&shared, &tenant, ResourceOp::Delete { resource, id }).await?;
    Ok(Json(record).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_table() {
        assert_eq!(status_of(ErrorCode::InvalidJson), StatusCode::BAD_REQUEST);
        assert_eq!(status_of(ErrorCode::Unauthorized), StatusCode::UNAUTHORIZED);
        assert_eq!(status_of(ErrorCode::Forbidden), StatusCode::FORBIDDEN);
        assert_eq!(status_of(ErrorCode::NotFound), StatusCode::NOT_FOUND);
        assert_eq!(
            status_of(ErrorCode::Unsupported),
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(status_of(ErrorCode::Conflict), StatusCode::CONFLICT);
        assert_eq!(
            status_of(ErrorCode::RateLimited),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(
            status_of(ErrorCode::Internal),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[test]
    fn api_keys_compare_whole() {
        assert!(constant_time_eq(b"key", b"key"));
        assert!(!constant_time_eq(b"key", b"kez"));
        assert!(!constant_time_eq(b"key", b"key2"));
        assert!(!constant_time_eq(b"key", b"ke"));
        assert!(!constant_time_eq(b"key", b""));
        assert!(!constant_time_eq(b"", b"key"));
    }
}
