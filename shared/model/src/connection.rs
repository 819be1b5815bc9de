use crate::{validate, ValidationErrors, MASK};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The longest `http.requestTimeoutMs`: a request, plus what deliver keeps back, must fit in
/// one invocation of the deliver function (120 s in infra/template.yaml).
pub const MAX_REQUEST_TIMEOUT_MS: u64 = 100_000;

/// How to reach one system, with its credentials.
///
/// A credential field may hold the secret itself or `secret:NAME`, which the secrets port
/// resolves at run time so that the stored definition holds no secret at all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"_id": "orders-api", "name": "Orders API", "type": "http",
    "http": {"baseURI": "https://api.example.com/v1",
             "auth": {"type": "token", "token": {"token": "secret:ORDERS_TOKEN"}},
             "requestTimeoutMs": 10000, "retry": {"maxAttempts": 5}},
    "concurrencyLevel": 4}))]
pub struct Connection {
    /// The id; generated on create when absent. Letters, digits, `_`, `-`, `.`; at most 128.
    #[serde(rename = "_id", default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// Shown in lists and messages; required.
    // serde default: a missing name gets validate()'s message naming the field.
    #[serde(default)]
    #[schema(required = true)]
    pub name: String,
    /// Which system this reaches; the settings sit under the field of the same name.
    #[serde(rename = "type")]
    pub kind: ConnectionType,
    /// Settings of an `http` connection (required when `type` is http).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpConnection>,
    /// Settings of an `sftp` connection (required when `type` is sftp).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sftp: Option<SftpConnection>,
    /// Settings of an `s3` connection (required when `type` is s3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Connection>,
    /// Settings of an `ftp` connection: an FTP or FTPS server (required when `type` is ftp).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ftp: Option<FtpConnection>,
    /// At most this many requests in flight over this connection, across all runs and every
    /// process sharing the store. Unset: 5 per process.
    #[serde(
        default,
        deserialize_with = "crate::parse::count",
        skip_serializing_if = "Option::is_none"
    )]
    pub concurrency_level: Option<u32>,
    /// At most this many requests a second, across all runs and processes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Names of secrets (as `secret:NAME` references resolve them) that the scripts of the
    /// exports and imports using this connection receive as `options.secrets.NAME`. Scripts
    /// see no secret, and none of the connection's credentials, unless it is listed here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub script_secrets: Vec<String>,
    /// The integration this belongs to.
    #[serde(
        rename = "_integrationId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub integration_id: Option<String>,
    /// Set by the API on create.
    #[serde(
        default,
        with = "crate::time::ms_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub created_at: Option<DateTime<Utc>>,
    /// Set by the API on every change.
    #[serde(
        default,
        with = "crate::time::ms_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_modified: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ConnectionType {
    /// A REST API.
    Http,
    /// An SFTP server (files written by sftp imports).
    Sftp,
    /// An S3 bucket (files read by s3 exports, written by s3 imports).
    S3,
    /// An FTP or FTPS server (files read by ftp exports).
    Ftp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
/// A header: name and value (the value may be a template where the definition says so).
pub struct NameValue {
    pub name: String,
    /// Credential headers (`Authorization`, `X-Api-Key`, ...) are masked in every answer;
    /// write `secret:NAME` to keep the secret out of the store.
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
/// How to reach a REST API.
pub struct HttpConnection {
    /// `http://` or `https://` URL that every relativeURI is joined to.
    #[serde(rename = "baseURI")]
    pub base_uri: String,
    /// Headers sent with every request over this connection.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<NameValue>,
    /// How requests authenticate (none when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<HttpAuth>,
    /// Per-request timeout in milliseconds (default 30000, at most 100000).
    #[serde(
        default,
        deserialize_with = "crate::parse::count",
        skip_serializing_if = "Option::is_none"
    )]
    pub request_timeout_ms: Option<u64>,
    /// Retries of 429, 5xx and network failures, with backoff and jitter that honour
    /// `Retry-After` (3 attempts when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// Allow requests to link-local / cloud metadata addresses (169.254.0.0/16, fd00:ec2::254).
    /// Off by default: a template must not be able to reach instance credentials.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_metadata_addresses: bool,
    /// Allow requests to loopback and private addresses (127.0.0.0/8, 10/8, 172.16/12,
    /// 192.168/16, 100.64/10, fc00::/7) where the deployment refuses them (on AWS, by default): a
    /// template must not be able to reach the VPC's services unless the connection says so.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_private_addresses: bool,
    /// Which redirects are followed (default `sameOrigin`). A redirect that is not followed
    /// is the reply, judged like any other.
    #[serde(default, skip_serializing_if = "FollowRedirects::is_default")]
    pub follow_redirects: FollowRedirects,
}

/// Which redirects (301, 302, 303, 307, 308) a connection follows, at most 5 in a row.
/// Whatever is allowed, the connection's credentials (its auth, its headers and credential
/// headers such as `X-Api-Key`) go only to its own origin, and no request carries a Referer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum FollowRedirects {
    /// Only to the baseURI's scheme, host and port.
    #[default]
    SameOrigin,
    /// Anywhere; on another origin without credentials.
    AnyOrigin,
    /// None: every 3xx is the reply.
    Never,
}

impl FollowRedirects {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
/// How failed requests are retried.
pub struct RetryPolicy {
    /// Attempts in all, the first included (default 3). 1 means no retry.
    #[serde(
        default = "default_attempts",
        deserialize_with = "crate::parse::required_count"
    )]
    pub max_attempts: u32,
    /// The first backoff in milliseconds (default 200); it doubles per attempt.
    #[serde(default = "default_base_delay")]
    pub base_delay_ms: u64,
    /// The longest backoff in milliseconds (default 20000).
    #[serde(default = "default_max_delay")]
    pub max_delay_ms: u64,
}
fn default_attempts() -> u32 {
    3
}
fn default_base_delay() -> u64 {
    200
}
fn default_max_delay() -> u64 {
    20_000
}
impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: default_attempts(),
            base_delay_ms: default_base_delay(),
            max_delay_ms: default_max_delay(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
/// A request rate held across every run and process sharing the store.
pub struct RateLimit {
    /// Requests a second (a positive number; 0.5 is one every two seconds).
    pub requests_per_second: f64,
    /// Requests that may go at once after a quiet spell (default 1).
    #[serde(
        default,
        deserialize_with = "crate::parse::count",
        skip_serializing_if = "Option::is_none"
    )]
    pub burst: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
/// How requests authenticate: `type` picks one, whose settings sit under the field of that name.
pub struct HttpAuth {
    #[serde(rename = "type")]
    #[schema(schema_with = auth_type_schema)]
    pub kind: AuthType,
    /// Required when `type` is basic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic: Option<BasicAuth>,
    /// Required when `type` is token (or its alias bearer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<TokenAuth>,
    /// Required when `type` is apikey.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apikey: Option<ApiKeyAuth>,
    /// Required when `type` is oauth2 (or its alias oauth).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth2: Option<OAuth2Auth>,
}

/// The spellings `AuthType` reads, its serde aliases (`bearer`, `oauth`) included, so the
/// published schema accepts what the API accepts.
fn auth_type_schema() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(["basic", "token", "bearer", "apikey", "oauth2", "oauth"]))
        .description(Some(
            "basic, token (alias bearer), apikey or oauth2 (alias oauth); answers use the first spelling",
        ))
        .build()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AuthType {
    /// `Authorization: Basic` from username and password.
    Basic,
    /// A bearer token (or any scheme) in a header.
    #[serde(alias = "bearer")]
    Token,
    /// An API key in a header or the query.
    Apikey,
    /// OAuth 2.0 client credentials.
    #[serde(alias = "oauth")]
    Oauth2,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
/// HTTP basic authentication.
pub struct BasicAuth {
    pub username: String,
    /// Masked in every answer; may be `secret:NAME`.
    pub password: String,
}

/// `Authorization: Bearer <token>` by default; scheme and header are configurable. With
/// `refreshRelativeURI`, the token comes from a request of the connection's own (integrator.io's
/// custom token refresh): asked for before the first request, cached, and asked for again when
/// the target answers 401 or the reply's `expires_in` runs out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"scheme": "Bearer", "refreshMethod": "POST",
    "refreshRelativeURI": "/auth/login", "refreshMediaType": "json",
    "refreshBody": "{\"apiKey\": \"{{connection.http.auth.token.refreshToken}}\"}",
    "refreshToken": "secret:SHOP_API_KEY", "refreshTokenPath": "data.token"}))]
pub struct TokenAuth {
    /// Masked in every answer; may be `secret:NAME`. Required unless `refreshRelativeURI`
    /// is set (the token then comes from that request).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub token: String,
    /// Written before the token (default `Bearer`; empty for none).
    #[serde(default = "default_scheme")]
    pub scheme: String,
    /// The header that carries it (default `Authorization`).
    #[serde(default = "default_auth_header")]
    pub header_name: String,
    /// The token request's method (default POST).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_method: Option<RefreshMethod>,
    /// Where the token is asked for: joined to `baseURI`, or an absolute URL. Setting it
    /// turns the custom token refresh on.
    #[serde(
        rename = "refreshRelativeURI",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub refresh_relative_uri: Option<String>,
    /// The token request's body: a handlebars template over
    /// `connection.http.auth.token.refreshToken` (the secret resolved).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_body: Option<String>,
    /// How the body is sent: `json` (default) or `urlencoded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_media_type: Option<RefreshMediaType>,
    /// Headers of the token request (values may be `secret:NAME`); the connection's own
    /// headers and auth are not sent there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refresh_headers: Vec<NameValue>,
    /// The credential the token request sends (an API key, a password, a refresh token):
    /// masked in every answer; may be `secret:NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Where the token is in the reply: a path like responseMapping's `extract`
    /// (`access_token`, `data.token`, `$.body.data.token`). Default `access_token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token_path: Option<String>,
}

/// The method of a custom token refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum RefreshMethod {
    Get,
    Post,
    Put,
}

/// The body encoding of a custom token refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RefreshMediaType {
    /// `application/json`: the body template's output as written.
    Json,
    /// `application/x-www-form-urlencoded`: the body template's output as written.
    Urlencoded,
}

impl TokenAuth {
    /// Is the token asked for by a request of the connection's own?
    pub fn refreshes(&self) -> bool {
        self.refresh_relative_uri.is_some()
    }

    fn validate_into(&self, e: &mut ValidationErrors) {
        if !self.refreshes() {
            validate::required(e, "http.auth.token.token", &self.token);
            let refresh_fields = [
                ("refreshMethod", self.refresh_method.is_some()),
                ("refreshBody", self.refresh_body.is_some()),
                ("refreshMediaType", self.refresh_media_type.is_some()),
                ("refreshHeaders", !self.refresh_headers.is_empty()),
                ("refreshToken", self.refresh_token.is_some()),
                ("refreshTokenPath", self.refresh_token_path.is_some()),
            ];
            for (field, set) in refresh_fields {
                if set {
                    e.add(
                        format!("http.auth.token.{field}"),
                        "is only used with http.auth.token.refreshRelativeURI (the token refresh request)",
                    );
                }
            }
        }
        if self.refresh_method == Some(RefreshMethod::Get) && self.refresh_body.is_some() {
            e.add(
                "http.auth.token.refreshBody",
                "a GET refresh request has no body",
            );
        }
        if self.refresh_token_path.as_deref() == Some("") {
            e.add("http.auth.token.refreshTokenPath", "must not be empty");
        }
    }
}

fn default_scheme() -> String {
    "Bearer".into()
}
fn default_auth_header() -> String {
    "Authorization".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ApiKeyLocation {
    /// A request header named `name`.
    Header,
    /// A query parameter named `name`.
    Query,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
/// An API key sent with every request.
pub struct ApiKeyAuth {
    /// Where the key goes.
    #[serde(rename = "in")]
    pub location: ApiKeyLocation,
    /// The header or query parameter name.
    pub name: String,
    /// The key; masked in every answer; may be `secret:NAME`.
    pub value: String,
}

/// OAuth 2.0: an access token from `tokenURI`, cached until shortly before it expires and
/// asked for again once when the target answers 401.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"tokenURI": "https://auth.example.com/oauth/token",
    "grantType": "refresh_token", "clientId": "sluice",
    "clientSecret": "secret:CRM_CLIENT_SECRET", "refreshToken": "secret:CRM_REFRESH_TOKEN"}))]
pub struct OAuth2Auth {
    /// Where the token is asked for.
    #[serde(rename = "tokenURI")]
    pub token_uri: String,
    /// How the token is asked for (default `client_credentials`).
    #[serde(default, skip_serializing_if = "OAuth2Grant::is_default")]
    pub grant_type: OAuth2Grant,
    pub client_id: String,
    /// Masked in every answer; may be `secret:NAME`. Required for `client_credentials`;
    /// a public client of the `refresh_token` grant has none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub client_secret: String,
    /// The refresh token of the `refresh_token` grant (required there): a `secret:NAME`
    /// reference, since the token server may send a new one with each access token and Sluice
    /// then stores it under that name (see README, "OAuth 2.0").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Scopes asked for, space separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// `authorization_code` only: the provider's authorization endpoint, where
    /// `sluice oauth authorize` (or `POST /connections/{id}/oauth2/authorize`) sends the user.
    #[serde(rename = "authURI", default, skip_serializing_if = "Option::is_none")]
    pub auth_uri: Option<String>,
    /// `authorization_code` only: the callback registered with the provider, served at
    /// `/oauth2/callback` by `sluice dev` (`http://127.0.0.1:<port>/oauth2/callback`) and by
    /// the API function on AWS.
    #[serde(
        rename = "redirectURI",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub redirect_uri: Option<String>,
    /// `authorization_code` only: send a PKCE challenge (S256, RFC 7636), as public clients
    /// and many providers require.
    #[serde(
        rename = "usePKCE",
        default,
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub use_pkce: bool,
}

/// The OAuth 2.0 grant a connection's access tokens come from (RFC 6749 spellings; the
/// integrator.io ones are read too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, ToSchema)]
pub enum OAuth2Grant {
    /// The client's own credentials (`clientId`, `clientSecret`).
    #[default]
    #[serde(rename = "client_credentials", alias = "clientcredentials")]
    ClientCredentials,
    /// A long-lived refresh token (`refreshToken`), rotated when the server sends a new one.
    #[serde(rename = "refresh_token", alias = "refreshtoken")]
    RefreshToken,
    /// A user authorizes Sluice once at `authURI`; the code the callback receives is
    /// exchanged for tokens and the refresh token stored as `refreshToken`'s secret. Access
    /// tokens then come by the refresh-token grant.
    #[serde(rename = "authorization_code", alias = "authorizecode")]
    AuthorizationCode,
}

impl OAuth2Grant {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

impl OAuth2Auth {
    fn validate_into(&self, e: &mut ValidationErrors) {
        if !is_http_url(&self.token_uri) {
            e.add("http.auth.oauth2.tokenURI", "must be an http or https URL");
        }
        validate::required(e, "http.auth.oauth2.clientId", &self.client_id);
        let grant = self.grant_type;
        if grant == OAuth2Grant::ClientCredentials {
            validate::required(e, "http.auth.oauth2.clientSecret", &self.client_secret);
        } else {
            match &self.refresh_token {
                Some(t) if crate::is_secret_reference(t) => {}
                Some(_) => e.add(
                    "http.auth.oauth2.refreshToken",
                    "must be a secret:NAME reference: the token server may send a new refresh token, which Sluice stores under that name",
                ),
                None => e.add(
                    "http.auth.oauth2.refreshToken",
                    "is required when grantType is refresh_token or authorization_code (a secret:NAME reference, where the refresh token is kept)",
                ),
            }
        }
        let code_fields = [
            ("authURI", self.auth_uri.as_deref()),
            ("redirectURI", self.redirect_uri.as_deref()),
        ];
        for (field, value) in code_fields {
            let field = format!("http.auth.oauth2.{field}");
            match (grant, value) {
                (OAuth2Grant::AuthorizationCode, None) => {
                    e.add(field, "is required when grantType is authorization_code")
                }
                (OAuth2Grant::AuthorizationCode, Some(v)) if !is_http_url(v) => {
                    e.add(field, "must be an http or https URL")
                }
                (OAuth2Grant::AuthorizationCode, Some(_)) | (_, None) => {}
                (_, Some(_)) => e.add(field, "is only used when grantType is authorization_code"),
            }
        }
        if self.use_pkce && grant != OAuth2Grant::AuthorizationCode {
            e.add(
                "http.auth.oauth2.usePKCE",
                "is only used when grantType is authorization_code",
            );
        }
    }
}

fn is_http_url(v: &str) -> bool {
    url::Url::parse(v)
        .is_ok_and(|u| (u.scheme() == "http" || u.scheme() == "https") && u.has_host())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
/// How to reach an SFTP server.
pub struct SftpConnection {
    pub host: String,
    /// Default 22.
    #[serde(default = "default_sftp_port")]
    pub port: u16,
    pub username: String,
    /// Masked in every answer; may be `secret:NAME`. This or `privateKey` is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// PEM/OpenSSH private key text; masked in every answer; may be `secret:NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
    /// The server's pinned host key: a known_hosts style `ssh-ed25519 AAAA...` line or a
    /// `SHA256:...` fingerprint. Required: an unchecked host key would send records to
    /// whoever answers.
    pub host_key: String,
}
fn default_sftp_port() -> u16 {
    22
}

/// How to reach an FTP or FTPS server, in integrator.io's field names (its FTP connection;
/// for SFTP, Sluice has connections of type `sftp`, with the server's host key pinned).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"type": "ftps", "hostURI": "ftp.example.com", "username": "orders",
    "password": "secret:ORDERS_FTP_PASSWORD"}))]
pub struct FtpConnection {
    /// `ftp` (no TLS) or `ftps` (TLS; explicit unless `useImplicitFtps`). Default ftp.
    #[serde(rename = "type", default)]
    pub kind: FtpProtocol,
    /// The server's host name or IP address, without a scheme (`ftp.example.com`).
    #[serde(rename = "hostURI")]
    pub host_uri: String,
    /// Default 21, or 990 with `useImplicitFtps`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    pub username: String,
    /// Masked in every answer; may be `secret:NAME` (the way to keep it out of the store).
    pub password: String,
    /// FTPS only: TLS from the first byte (the server's implicit FTPS port, 990 by
    /// default) instead of `AUTH TLS` after connecting. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub use_implicit_ftps: bool,
    /// Passive mode: the client opens the data connections (default true). Active mode
    /// needs the server to reach back to the client, which a Lambda function cannot take.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub use_passive_mode: bool,
    /// FTPS only: PEM certificates trusted besides the system's roots (a private CA, or
    /// the server's own self-signed certificate). The certificate's names must still
    /// match `hostURI`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted_certificates: Option<String>,
}
fn yes() -> bool {
    true
}
fn is_true(b: &bool) -> bool {
    *b
}

/// FTP with or without TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FtpProtocol {
    /// Plain FTP: the password and the files cross the network unencrypted.
    #[default]
    Ftp,
    /// FTP over TLS, the server's certificate checked.
    Ftps,
}

/// How an FTP connection is secured, as its fields say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FtpTls {
    None,
    /// `AUTH TLS` on the plain port.
    Explicit,
    /// TLS from the first byte.
    Implicit,
}

impl FtpConnection {
    pub fn tls(&self) -> FtpTls {
        match (self.kind, self.use_implicit_ftps) {
            (FtpProtocol::Ftp, _) => FtpTls::None,
            (FtpProtocol::Ftps, false) => FtpTls::Explicit,
            (FtpProtocol::Ftps, true) => FtpTls::Implicit,
        }
    }

    /// The port given, else the protocol's.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.tls() {
            FtpTls::Implicit => 990,
            _ => 21,
        })
    }

    fn validate_into(&self, e: &mut ValidationErrors) {
        validate::required(e, "ftp.hostURI", &self.host_uri);
        if self.host_uri.contains("://") {
            e.add(
                "ftp.hostURI",
                "is a host name or address without a scheme (ftp.example.com, not ftp://ftp.example.com)",
            );
        }
        validate::required(e, "ftp.username", &self.username);
        validate::required(e, "ftp.password", &self.password);
        if self.port == Some(0) {
            e.add("ftp.port", "must be between 1 and 65535");
        }
        if self.kind == FtpProtocol::Ftp {
            if self.use_implicit_ftps {
                e.add("ftp.useImplicitFtps", "is only for type ftps");
            }
            if self.trusted_certificates.is_some() {
                e.add("ftp.trustedCertificates", "is only for type ftps");
            }
        }
        if let Some(pem) = &self.trusted_certificates {
            if !pem.contains("-----BEGIN CERTIFICATE-----") {
                e.add(
                    "ftp.trustedCertificates",
                    "holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                );
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
/// An S3 bucket, reached with the function's (or the local AWS profile's) credentials.
pub struct S3Connection {
    pub bucket: String,
    /// The bucket's region (default: the deployment's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// A key prefix every key is under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

impl Connection {
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut e = ValidationErrors::new();
        validate::identity(&mut e, &self.id, &self.name);
        match self.kind {
            ConnectionType::Http => match &self.http {
                None => e.add("http", "is required when type is http"),
                Some(h) => {
                    match url::Url::parse(&h.base_uri) {
                        Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
                        Ok(u) => e.add(
                            "http.baseURI",
                            format!("scheme must be http or https, not {}", u.scheme()),
                        ),
                        Err(err) => e.add("http.baseURI", format!("is not a URL: {err}")),
                    }
                    if let Some(a) = &h.auth {
                        let missing = match a.kind {
                            AuthType::Basic => a.basic.is_none().then_some("basic"),
                            AuthType::Token => a.token.is_none().then_some("token"),
                            AuthType::Apikey => a.apikey.is_none().then_some("apikey"),
                            AuthType::Oauth2 => a.oauth2.is_none().then_some("oauth2"),
                        };
                        if let Some(m) = missing {
                            e.add(
                                format!("http.auth.{m}"),
                                format!("is required when http.auth.type is {m}"),
                            );
                        }
                        if let (AuthType::Oauth2, Some(o)) = (a.kind, &a.oauth2) {
                            o.validate_into(&mut e);
                        }
                        if let (AuthType::Token, Some(t)) = (a.kind, &a.token) {
                            t.validate_into(&mut e);
                        }
                    }
                    if let Some(r) = &h.retry {
                        if r.max_attempts == 0 {
                            e.add("http.retry.maxAttempts", "must be at least 1");
                        }
                    }
                    if let Some(ms) = h.request_timeout_ms {
                        if !(1..=MAX_REQUEST_TIMEOUT_MS).contains(&ms) {
                            e.add(
                                "http.requestTimeoutMs",
                                format!("must be between 1 and {MAX_REQUEST_TIMEOUT_MS} (a request must fit in one 120 s deliver invocation)"),
                            );
                        }
                    }
                }
            },
            ConnectionType::Sftp => match &self.sftp {
                None => e.add("sftp", "is required when type is sftp"),
                Some(s) => {
                    validate::required(&mut e, "sftp.host", &s.host);
                    validate::required(&mut e, "sftp.username", &s.username);
                    validate::required(&mut e, "sftp.hostKey", &s.host_key);
                    if s.password.is_none() && s.private_key.is_none() {
                        e.add(
                            "sftp.password",
                            "either sftp.password or sftp.privateKey is required",
                        );
                    }
                }
            },
            ConnectionType::S3 => match &self.s3 {
                None => e.add("s3", "is required when type is s3"),
                Some(s) => validate::required(&mut e, "s3.bucket", &s.bucket),
            },
            ConnectionType::Ftp => match &self.ftp {
                None => e.add("ftp", "is required when type is ftp"),
                Some(f) => f.validate_into(&mut e),
            },
        }
        if self.concurrency_level == Some(0) {
            e.add("concurrencyLevel", "must be at least 1");
        }
        if let Some(r) = &self.rate_limit {
            if !(r.requests_per_second > 0.0 && r.requests_per_second.is_finite()) {
                e.add("rateLimit.requestsPerSecond", "must be a positive number");
            }
            if r.burst == Some(0) {
                e.add("rateLimit.burst", "must be at least 1");
            }
        }
        for (i, name) in self.script_secrets.iter().enumerate() {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                e.add(
                    format!("scriptSecrets[{i}]"),
                    format!("'{name}' is not a secret name (letters, digits, `_`, `-`)"),
                );
            }
        }
        e.into_result()
    }

    /// A copy fit to show: every secret replaced by [`MASK`]. `secret:NAME` references are
    /// kept, since they hold no secret.
    pub fn masked(&self) -> Connection {
        let mut c = self.clone();
        c.for_each_secret(|s| {
            if !crate::is_secret_reference(s) && !s.is_empty() {
                *s = MASK.to_string();
            }
        });
        c
    }

    /// Where a field of `update` holds [`MASK`], keep the value from `stored`, so a client may
    /// send back what it was shown.
    pub fn keep_masked_secrets_from(&mut self, stored: &Connection) {
        let mut old = Vec::new();
        stored.clone().for_each_secret(|s| old.push(s.clone()));
        let mut i = 0;
        // Secrets are visited in the same order in both; a structure change (other auth
        // type) leaves MASK in place, which validation then refuses.
        let same_shape = {
            let mut n = 0;
            self.clone().for_each_secret(|_| n += 1);
            n == old.len()
        };
        if !same_shape {
            return;
        }
        self.for_each_secret(|s| {
            if s == MASK {
                *s = old[i].clone();
            }
            i += 1;
        });
    }

    /// Does any secret still read [`MASK`] (a masked value sent back with nothing to restore)?
    pub fn has_masked_secret(&self) -> bool {
        let mut found = false;
        self.clone().for_each_secret(|s| found |= s == MASK);
        found
    }

    fn for_each_secret(&mut self, mut f: impl FnMut(&mut String)) {
        if let Some(h) = &mut self.http {
            for hv in &mut h.headers {
                if is_secret_header(&hv.name) {
                    f(&mut hv.value);
                }
            }
            if let Some(a) = &mut h.auth {
                if let Some(b) = &mut a.basic {
                    f(&mut b.password);
                }
                if let Some(t) = &mut a.token {
                    f(&mut t.token);
                    if let Some(r) = &mut t.refresh_token {
                        f(r);
                    }
                    for hv in &mut t.refresh_headers {
                        if is_secret_header(&hv.name) {
                            f(&mut hv.value);
                        }
                    }
                }
                if let Some(k) = &mut a.apikey {
                    f(&mut k.value);
                }
                if let Some(o) = &mut a.oauth2 {
                    f(&mut o.client_secret);
                    if let Some(t) = &mut o.refresh_token {
                        f(t);
                    }
                }
            }
        }
        if let Some(ftp) = &mut self.ftp {
            f(&mut ftp.password);
        }
        if let Some(s) = &mut self.sftp {
            if let Some(p) = &mut s.password {
                f(p);
            }
            if let Some(k) = &mut s.private_key {
                f(k);
            }
        }
    }
}

/// Headers whose values are credentials even when set as plain headers.
pub fn is_secret_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n == "authorization"
        || n == "proxy-authorization"
        || n == "cookie"
        || n.contains("api-key")
        || n.contains("apikey")
        || n.contains("token")
        || n.contains("secret")
}

#[cfg(test)]
mod tests {
    use super::Connection;
    use serde_json::{json, Value};

    fn problems(auth: Value) -> Vec<(String, String)> {
        let c: Connection = serde_json::from_value(json!({"_id": "c", "name": "c", "type": "http",
            "http": {"baseURI": "https://api.example.com", "auth": auth}}))
        .unwrap();
        match c.validate() {
            Ok(()) => vec![],
            Err(e) => e.0.into_iter().map(|f| (f.field, f.message)).collect(),
        }
    }

    fn fields(auth: Value) -> Vec<String> {
        problems(auth).into_iter().map(|(f, _)| f).collect()
    }

    #[test]
    fn oauth2_grants_need_their_own_fields_and_only_those() {
        let oauth = |o: Value| json!({"type": "oauth2", "oauth2": o});
        let base = json!({"tokenURI": "https://auth.example.com/token", "clientId": "cid"});
        let with = |extra: Value| {
            let mut o = base.clone();
            o.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            oauth(o)
        };
        assert_eq!(
            fields(with(json!({"clientSecret": "s"}))),
            Vec::<String>::new()
        );
        assert_eq!(fields(with(json!({}))), ["http.auth.oauth2.clientSecret"]);
        // The refresh grant: a public client needs no secret; the token must be a reference.
        let refresh = json!({"grantType": "refresh_token", "refreshToken": "secret:RT"});
        assert_eq!(fields(with(refresh)), Vec::<String>::new());
        let literal = problems(with(
            json!({"grantType": "refresh_token", "refreshToken": "rt-1"}),
        ));
        assert_eq!(literal[0].0, "http.auth.oauth2.refreshToken");
        assert!(literal[0].1.contains("secret:NAME"), "{}", literal[0].1);
        assert_eq!(
            fields(with(json!({"grantType": "refreshtoken"}))),
            ["http.auth.oauth2.refreshToken"],
            "integrator.io's spelling reads"
        );
        // The authorization code: its URLs required, and only there.
        let code = json!({"grantType": "authorization_code", "refreshToken": "secret:RT"});
        assert_eq!(
            fields(with(code)),
            ["http.auth.oauth2.authURI", "http.auth.oauth2.redirectURI"]
        );
        let code = json!({"grantType": "authorizecode", "refreshToken": "secret:RT",
            "authURI": "https://auth.example.com/authorize", "usePKCE": true,
            "redirectURI": "http://127.0.0.1:8080/oauth2/callback"});
        assert_eq!(fields(with(code)), Vec::<String>::new());
        let misplaced =
            json!({"clientSecret": "s", "authURI": "https://a.example.com", "usePKCE": true});
        assert_eq!(
            fields(with(misplaced)),
            ["http.auth.oauth2.authURI", "http.auth.oauth2.usePKCE"]
        );
        assert_eq!(
            fields(oauth(
                json!({"tokenURI": "ftp://x", "clientId": "c", "clientSecret": "s"})
            )),
            ["http.auth.oauth2.tokenURI"]
        );
    }

    #[test]
    fn a_custom_token_refresh_needs_its_uri_for_its_other_fields() {
        let token = |t: Value| json!({"type": "token", "token": t});
        assert_eq!(fields(token(json!({"token": "t"}))), Vec::<String>::new());
        assert_eq!(fields(token(json!({}))), ["http.auth.token.token"]);
        let refresh = json!({"refreshRelativeURI": "/login", "refreshToken": "secret:K",
            "refreshTokenPath": "data.token", "refreshMethod": "POST", "refreshBody": "{}"});
        assert_eq!(fields(token(refresh)), Vec::<String>::new());
        assert_eq!(
            fields(token(json!({"token": "t", "refreshTokenPath": "x"}))),
            ["http.auth.token.refreshTokenPath"]
        );
        assert_eq!(
            fields(token(
                json!({"refreshRelativeURI": "/l", "refreshMethod": "GET", "refreshBody": "x"})
            )),
            ["http.auth.token.refreshBody"]
        );
    }

    #[test]
    fn refresh_tokens_and_refresh_credentials_are_masked() {
        let c: Connection = serde_json::from_value(json!({"_id": "c", "name": "c", "type": "http",
            "http": {"baseURI": "https://api.example.com", "auth": {"type": "token", "token": {
                "refreshRelativeURI": "/l", "refreshToken": "k-123",
                "refreshHeaders": [{"name": "X-Api-Key", "value": "h-456"}]}}}}))
        .unwrap();
        let shown = serde_json::to_string(&c.masked()).unwrap();
        assert!(
            !shown.contains("k-123") && !shown.contains("h-456"),
            "{shown}"
        );
        let mut back = c.masked();
        back.keep_masked_secrets_from(&c);
        assert_eq!(back, c, "masked values sent back keep the stored ones");
    }
}
