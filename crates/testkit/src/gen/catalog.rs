//! The generator's catalog: the services of the simulated shop, the events each one logs per
//! level, the SQL they run and the shape of their stack traces.
//!
//! Templates use `{name}` placeholders, filled per record by `gen::fill` (which lists the
//! closed set). The HTTP spec of an event is `""` (not a request), `"METHOD /path"` (status
//! drawn to match the level) or `"METHOD /path STATUS"`. Weights are relative within one service
//! and level; non-ASCII events carry small weights so that about 5% of all messages are
//! non-ASCII.

use schema::Level;

const T: Level = Level::Trace;
const D: Level = Level::Debug;
const I: Level = Level::Info;
const W: Level = Level::Warn;
const E: Level = Level::Error;
const F: Level = Level::Fatal;

/// Weight of an ordinary event.
const COMMON: u32 = 20;
/// Weight of a non-ASCII (German, Japanese, emoji) event.
const INTL: u32 = 5;

/// One kind of log line a service emits.
#[derive(Debug)]
pub(super) struct Event {
    /// Severity of the line.
    pub(super) level: Level,
    /// Relative frequency among the service's events of the same level.
    pub(super) weight: u32,
    /// `""`, `"METHOD /path"` or `"METHOD /path STATUS"`.
    pub(super) http: &'static str,
    /// Message template.
    pub(super) message: &'static str,
    /// Error type for `error`/`fatal` events (the `error.type` field), `""` otherwise.
    pub(super) error: &'static str,
}

/// A service of the simulated shop.
#[derive(Debug)]
pub(super) struct Service {
    /// The `service` field.
    pub(super) name: &'static str,
    /// Relative share of all records.
    pub(super) weight: u32,
    /// SQL statements for the `db` object; empty for services without a database.
    pub(super) statements: &'static [&'static str],
    /// Stack trace template of `error.stack`; `{type}` is the error type.
    pub(super) stack: &'static str,
    /// What the service logs.
    pub(super) events: &'static [Event],
}

const fn ev(level: Level, http: &'static str, message: &'static str) -> Event {
    Event {
        level,
        weight: COMMON,
        http,
        message,
        error: "",
    }
}

const fn intl(level: Level, http: &'static str, message: &'static str) -> Event {
    Event {
        level,
        weight: INTL,
        http,
        message,
        error: "",
    }
}

const fn err(
    level: Level,
    http: &'static str,
    message: &'static str,
    error: &'static str,
) -> Event {
    Event {
        level,
        weight: COMMON,
        http,
        message,
        error,
    }
}

/// Values of `{currency}`.
pub(super) const CURRENCIES: &[&str] = &["EUR", "EUR", "USD", "GBP", "CHF"];
/// Values of `{provider}`.
pub(super) const PROVIDERS: &[&str] = &["stripe", "adyen", "paypal", "klarna"];
/// Values of `{code}` (payment decline codes).
pub(super) const DECLINE_CODES: &[&str] = &[
    "insufficient_funds",
    "card_declined",
    "expired_card",
    "do_not_honor",
    "incorrect_cvc",
];
/// Values of `{warehouse}`.
pub(super) const WAREHOUSES: &[&str] = &["FRA-1", "FRA-2", "DUB-1", "IAD-3", "NRT-1"];
/// Values of `{channel}`.
pub(super) const CHANNELS: &[&str] = &["email", "email", "push", "sms"];
/// Values of `{template}` (notification templates).
pub(super) const TEMPLATES: &[&str] = &[
    "order_confirmation",
    "shipping_update",
    "password_reset",
    "payment_failed",
    "welcome",
];
/// Values of `{query}` (search terms).
pub(super) const QUERIES: &[&str] = &[
    "wireless headphones",
    "running shoes",
    "espresso machine",
    "usb-c cable 2m",
    "standing desk",
    "winter jacket",
    "mechanical keyboard",
    "yoga mat",
];
/// Mail domains of `{email}`.
pub(super) const MAIL_DOMAINS: &[&str] = &["example.com", "example.org", "mail.example.net"];
/// Values of `user.region` and `{region}`.
pub(super) const REGIONS: &[&str] = &[
    "eu-central-1",
    "eu-west-1",
    "us-east-1",
    "us-west-2",
    "ap-northeast-1",
];

/// The services, in the order their hosts are named.
pub(super) const SERVICES: &[Service] = &[
    Service {
        name: "api-gateway",
        weight: 22,
        statements: &[],
        stack: "{type}\ngoroutine 1184 [running]:\nproxy.(*Upstream).RoundTrip()\n\t/src/proxy/upstream.go:214\nrouter.(*Router).ServeHTTP()\n\t/src/router/router.go:88",
        events: &[
            ev(T, "GET /v1/products", "Route matched: upstream=search-service rule=products_read"),
            ev(T, "", "Upstream pool stats: idle={n} active={qty}"),
            ev(D, "GET /v1/orders/{order}", "Forwarding to order-service (attempt {retry})"),
            ev(D, "", "JWT validated for {user}, scopes=orders:read,profile"),
            ev(D, "POST /v1/payments", "Rate limit bucket tenant=acme remaining={n}"),
            ev(I, "GET /v1/orders/{order}", "GET /v1/orders/{order} completed in {ms}ms"),
            ev(I, "POST /v1/orders", "POST /v1/orders completed in {ms}ms"),
            ev(I, "GET /v1/products", "Served /v1/products from edge cache"),
            ev(I, "GET /v1/users/{user}/profile", "Profile request for {user} completed"),
            ev(I, "GET /v1/search", "Proxied search request to search-service"),
            ev(I, "", "Reloaded routing table: 42 routes, 8 upstreams"),
            intl(I, "", "✅ Upstream search-service healthy again (probe #{retry})"),
            ev(W, "GET /v1/orders/{order} 429", "Rate limit exceeded for client {ip}"),
            ev(W, "POST /v1/orders 413", "Request body too large from {ip}: limit is 1 MiB"),
            ev(W, "GET /v1/users/{user}/profile 401", "Missing or invalid bearer token from {ip}"),
            ev(W, "GET /v1/legacy/cart 404", "No route for GET /v1/legacy/cart"),
            ev(W, "GET /v1/products 400", "Malformed header X-Client-Version: \"ios\t4.2.1\""),
            intl(W, "", "⚠️ Upstream-Latenz hoch: p99 {ms}ms für order-service"),
            err(E, "GET /v1/orders/{order} 502", "Upstream order-service returned 502 after {ms}ms", "UpstreamError"),
            err(E, "POST /v1/payments 504", "Upstream payment-service timed out after {ms}ms", "UpstreamTimeout"),
            err(E, "GET /v1/inventory/{sku} 503", "Circuit breaker open for inventory-service", "CircuitOpen"),
            err(F, "", "Cannot bind 0.0.0.0:8080: address already in use", "BindError"),
            err(F, "", "TLS certificate /etc/tls/gateway.crt expired, refusing to start", "TlsConfigError"),
        ],
    },
    Service {
        name: "auth-service",
        weight: 12,
        statements: &[
            "SELECT id, password_hash, mfa_enabled FROM users WHERE email = $1",
            "DELETE FROM sessions WHERE expires_at < now()",
            "INSERT INTO refresh_tokens (user_id, family, expires_at) VALUES ($1, $2, $3)",
        ],
        stack: "{type}\n\tat com.shop.auth.TokenService.issue(TokenService.kt:97)\n\tat com.shop.auth.LoginController.login(LoginController.kt:41)",
        events: &[
            ev(T, "", "Session cache lookup key=sess:{user}"),
            ev(T, "", "Loaded JWKS with 3 keys (kid=2026-11)"),
            ev(D, "POST /v1/auth/token", "Issued access token for {user}, expires in 900s"),
            ev(D, "", "Refresh token rotated for {user}"),
            ev(D, "", "Password hash verified in {ms}ms (argon2id)"),
            ev(I, "POST /v1/auth/login", "User {user} logged in from {ip}"),
            ev(I, "POST /v1/auth/logout", "User {user} logged out"),
            ev(I, "POST /v1/auth/token", "Token refreshed for {user}"),
            ev(I, "POST /v1/auth/mfa/verify", "MFA challenge passed for {user} (totp)"),
            ev(I, "", "Session cleanup removed {rows} expired sessions"),
            ev(I, "", "Rotated signing keys, active kid=2026-11"),
            intl(I, "POST /v1/auth/login", "Benutzer {user} hat sich erfolgreich angemeldet"),
            intl(I, "POST /v1/auth/login", "ユーザー {user} がログインしました"),
            ev(W, "POST /v1/auth/login 401", "Failed login for {email}: invalid password (attempt {retry} of 5)"),
            ev(W, "POST /v1/auth/token 400", "Refresh token reuse detected for {user}, revoking session"),
            ev(W, "POST /v1/auth/login 429", "Account {user} locked after 5 failed attempts"),
            ev(W, "POST /v1/auth/password/reset 422", "Password rejected by policy: \"at least 12 characters\""),
            intl(W, "POST /v1/auth/login 401", "Anmeldung für {email} fehlgeschlagen: ungültiges Passwort"),
            err(E, "POST /v1/auth/login 503", "LDAP ldap.internal:636 unreachable after {ms}ms", "LdapConnectError"),
            err(E, "POST /v1/auth/token 500", "Cannot sign token: key kid=2026-11 not in keystore", "KeyNotFound"),
            err(F, "", "Cannot load signing key /run/secrets/jwt.pem: permission denied", "KeyLoadError"),
        ],
    },
    Service {
        name: "user-service",
        weight: 12,
        statements: &[
            "SELECT id, email, display_name, locale FROM users WHERE id = $1",
            "UPDATE users SET display_name = $2, updated_at = now() WHERE id = $1",
        ],
        stack: "Traceback (most recent call last):\n  File \"/app/users/repository.py\", line 88, in get_user\n    row = await conn.fetchrow(QUERY, user_id)\n{type}",
        events: &[
            ev(T, "", "Cache hit for profile:{user}"),
            ev(D, "GET /v1/users/{user}", "Loaded profile {user} from cache (age {n}s)"),
            ev(D, "", "User lookup returned {rows} rows in {db_ms}ms"),
            ev(I, "GET /v1/users/{user}", "Fetched profile for {user}"),
            ev(I, "PATCH /v1/users/{user}", "Updated profile of {user}: display_name, locale"),
            ev(I, "POST /v1/users", "Created user {user} in {region} on plan {plan}"),
            ev(I, "PUT /v1/users/{user}/preferences", "Saved preferences for {user}"),
            ev(I, "", "GDPR export for {user} finished ({n} files)"),
            intl(I, "PATCH /v1/users/{user}", "Anzeigename von {user} geändert zu \"Jürgen Müller\""),
            intl(I, "POST /v1/users", "新しいユーザー {user} を登録しました（プラン: {plan}）"),
            ev(W, "GET /v1/users/{user} 404", "User {user} not found"),
            ev(W, "POST /v1/users 409", "Email {email} already registered"),
            ev(W, "PATCH /v1/users/{user} 422", "Rejected avatar path C:\\Users\\{user}\\Pictures\\me.png: not a URL"),
            err(E, "GET /v1/users/{user} 500", "Query for {user} failed after {ms}ms: connection reset", "DatabaseError"),
            err(E, "PUT /v1/users/{user}/avatar 502", "Avatar upload to object storage failed", "StorageError"),
            err(F, "", "Migration 0042_add_user_locale failed, aborting startup", "MigrationError"),
        ],
    },
    Service {
        name: "order-service",
        weight: 14,
        statements: &[
            "SELECT * FROM order_lines WHERE order_id = $1",
            "INSERT INTO orders (id, user_id, total_cents, currency) VALUES ($1, $2, $3, $4)",
            "SELECT id, status FROM orders WHERE user_id = $1 ORDER BY created_at DESC LIMIT 20",
        ],
        stack: "{type}\n\tat com.shop.orders.OrderRepository.save(OrderRepository.java:132)\n\tat com.shop.orders.CheckoutService.place(CheckoutService.java:57)",
        events: &[
            ev(T, "", "Order {order} state CREATED -> RESERVED"),
            ev(D, "GET /v1/orders/{order}", "Loaded order {order}, line_items={qty}"),
            ev(D, "", "Published OrderCreated for {order} to orders.v1"),
            ev(I, "POST /v1/orders", "Order {order} created: items={qty}, total {amount} {currency}"),
            ev(I, "GET /v1/orders/{order}", "Fetched order {order}"),
            ev(I, "POST /v1/orders/{order}/cancel", "Order {order} cancelled by {user}"),
            ev(I, "", "Order {order} shipped via DHL"),
            ev(I, "GET /v1/users/{user}/orders", "Listed {rows} orders for {user}"),
            ev(I, "", "Outbox relay published {n} events"),
            intl(I, "POST /v1/orders", "注文 {order} を処理しました"),
            intl(I, "", "Bestellung {order} wurde versandt 📦"),
            ev(W, "POST /v1/orders 409", "Order {order} rejected: {sku} out of stock"),
            ev(W, "POST /v1/orders/{order}/cancel 409", "Cannot cancel {order}: already shipped"),
            ev(W, "GET /v1/orders/{order} 404", "Order {order} not found"),
            ev(W, "POST /v1/orders 201", "Slow checkout for {order}: {ms}ms"),
            err(E, "POST /v1/orders 500", "Cannot persist order {order}: deadlock detected", "DeadlockDetected"),
            err(E, "POST /v1/orders 503", "payment-service unavailable while placing {order}", "UpstreamUnavailable"),
            err(F, "", "Kafka producer fenced: transactional.id order-service-0 in use", "ProducerFenced"),
        ],
    },
    Service {
        name: "payment-service",
        weight: 10,
        statements: &[
            "SELECT id, status FROM payments WHERE idempotency_key = $1",
            "UPDATE payments SET status = 'captured' WHERE id = $1",
        ],
        stack: "{type}\n\tat com.shop.payments.ProviderClient.charge(ProviderClient.java:142)\n\tat com.shop.payments.PaymentService.capture(PaymentService.java:77)",
        events: &[
            ev(T, "", "Idempotency key computed for {order}"),
            ev(D, "POST /v1/payments", "Charging {amount} {currency} via {provider} for {order}"),
            ev(D, "", "3-D Secure not required for {order}"),
            ev(I, "POST /v1/payments", "Payment captured for {order}: {amount} {currency} via {provider}"),
            ev(I, "POST /v1/refunds", "Refund of {amount} {currency} issued for {order}"),
            ev(I, "POST /v1/payments/{order}/authorize", "Payment authorized for {order} ({provider})"),
            ev(I, "", "Settlement batch closed: {rows} transactions"),
            ev(I, "", "Exchange rates refreshed ({n} currencies)"),
            intl(I, "POST /v1/payments", "Zahlung für Bestellung {order} über {amount} EUR erfolgreich"),
            intl(I, "POST /v1/payments", "注文 {order} の支払いを受け付けました"),
            ev(W, "POST /v1/payments 402", "Payment declined for {order}: {code}"),
            ev(W, "POST /v1/payments 409", "Duplicate payment for {order} blocked by idempotency key"),
            ev(W, "POST /v1/payments 201", "Provider {provider} answered slowly: {ms}ms"),
            intl(W, "POST /v1/payments 402", "Zahlung für Bestellung {order} abgelehnt: {code}"),
            err(E, "POST /v1/payments 502", "Provider {provider} sent an invalid response for {order}", "ProviderError"),
            err(E, "POST /v1/payments 504", "Provider {provider} timed out after {ms}ms", "ProviderTimeout"),
            err(E, "", "Webhook signature verification failed for event evt_{n}", "SignatureMismatch"),
            err(F, "", "Payment vault https://vault.internal:8200 unreachable, stopping", "VaultUnavailable"),
        ],
    },
    Service {
        name: "inventory-service",
        weight: 10,
        statements: &[
            "SELECT sku, available FROM stock WHERE sku = ANY($1) FOR UPDATE",
            "UPDATE stock SET reserved = reserved + $2 WHERE sku = $1",
        ],
        stack: "{type}\n   0: inventory::reservations::reserve at src/reservations.rs:151\n   1: inventory::http::create_reservation at src/http.rs:63",
        events: &[
            ev(T, "", "Reservation lock acquired for {sku}"),
            ev(D, "GET /v1/inventory/{sku}", "Stock for {sku} at {warehouse}: {qty} available"),
            ev(D, "", "Recomputed availability of {rows} SKUs in {db_ms}ms"),
            ev(I, "POST /v1/inventory/reservations", "Reserved {qty} x {sku} for {order}"),
            ev(I, "DELETE /v1/inventory/reservations/{order}", "Released reservation for {order}"),
            ev(I, "", "Restock at {warehouse}: {sku} +{n} units"),
            ev(I, "GET /v1/inventory/{sku}", "Availability of {sku}: available={qty}"),
            ev(I, "", "Stock reconciliation done for {warehouse}"),
            intl(I, "", "在庫を更新しました: {sku} ({warehouse})"),
            ev(W, "POST /v1/inventory/reservations 409", "Insufficient stock for {sku}: wanted {qty}, have 0"),
            ev(W, "", "Stock of {sku} below reorder point at {warehouse}"),
            ev(W, "GET /v1/inventory/{sku} 404", "Unknown SKU {sku}"),
            intl(W, "", "Lagerbestand für {sku} in {warehouse} fast erschöpft ⚠️"),
            err(E, "POST /v1/inventory/reservations 500", "Reservation for {order} failed at attempt {retry}: serialization failure", "SerializationFailure"),
            err(E, "", "Sync with warehouse {warehouse} failed: connection refused", "SyncError"),
            err(F, "", "Snapshot /var/lib/inventory/snapshot.bin corrupt (checksum mismatch)", "CorruptSnapshot"),
        ],
    },
    Service {
        name: "notification-service",
        weight: 10,
        statements: &["SELECT channel, address FROM contact_points WHERE user_id = $1"],
        stack: "{type}\n    at SmtpTransport.send (/app/src/transports/smtp.js:112:19)\n    at async Dispatcher.deliver (/app/src/dispatcher.js:48:7)",
        events: &[
            ev(T, "", "Rendering {template} (locale de-DE)"),
            ev(D, "", "Queued {channel} notification {template} for {user}"),
            ev(D, "", "Provider rate window: {n}/100 messages used"),
            ev(I, "POST /v1/notifications", "Sent {template} via {channel} to {user}"),
            ev(I, "", "Delivered {template} email to {email}"),
            ev(I, "", "Push notification delivered to {n} devices of {user}"),
            ev(I, "POST /v1/notifications/batch", "Accepted batch of {n} notifications"),
            intl(I, "", "✅ E-Mail \"Bestellbestätigung\" an {email} gesendet"),
            intl(I, "", "🔔 {user} にプッシュ通知を送信しました"),
            ev(W, "", "Email to {email} soft-bounced: mailbox full, retry {retry}"),
            ev(W, "POST /v1/notifications 422", "Unknown template \"{template}_v0\""),
            ev(W, "POST /v1/notifications 429", "SMS provider throttling, delaying {n} messages"),
            err(E, "", "SMS to {user} failed: provider error 30003 (unreachable)", "DeliveryFailed"),
            err(E, "POST /v1/notifications 502", "SMTP relay smtp.internal:587 refused after {ms}ms", "SmtpError"),
            err(F, "", "Template directory /app/templates is empty", "TemplateLoadError"),
        ],
    },
    Service {
        name: "search-service",
        weight: 10,
        statements: &["SELECT id, title, price_cents FROM products WHERE updated_at > $1"],
        stack: "{type}\n   0: search::shards::query at src/shards.rs:204\n   1: search::api::search at src/api.rs:71",
        events: &[
            ev(T, "", "Tokenized \"{query}\" into {n} terms"),
            ev(D, "GET /v1/search", "Query \"{query}\" expanded with {n} synonyms"),
            ev(D, "", "Shard {n} of products-v7 answered in {ms}ms"),
            ev(I, "GET /v1/search", "Search \"{query}\" returned {hits} hits"),
            ev(I, "GET /v1/suggest", "Suggestions for \"{query}\": {n} results"),
            ev(I, "", "Reindexed {rows} changed products"),
            ev(I, "", "Index products-v7 refreshed"),
            ev(I, "GET /v1/search", "Search for {user} served from cache"),
            intl(I, "GET /v1/search", "検索「{query}」の結果 {hits} 件"),
            intl(I, "GET /v1/search", "Suche nach \"Kaffeemühle\" lieferte {hits} Treffer"),
            ev(W, "GET /v1/search 400", "Query too long ({n} terms), truncated to 32"),
            ev(W, "GET /v1/search 200", "Slow search \"{query}\": {ms}ms"),
            ev(W, "GET /v1/search 400", "Invalid regex in filter: \"^sku-\\d+(\" (unclosed group)"),
            err(E, "GET /v1/search 503", "Cluster health RED, search degraded", "ClusterUnavailable"),
            err(E, "GET /v1/search 500", "Search \"{query}\" failed: shard 3 of products-v7 unavailable", "ShardFailure"),
            err(F, "", "Index products-v7 missing and no alias configured", "IndexNotFound"),
        ],
    },
];
