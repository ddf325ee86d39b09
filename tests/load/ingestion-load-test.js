// k6 load test of the producer's HTTP ingest (POST /v1/logs), run by GitLab's load-test job
// (scripts/load-test.sh --url http://producer:8000 --bootstrap kafka:9092), by
// scripts/load-test.sh here (against a producer it starts) and by the container tests
// (tests/containers/load.bats) against the producer image.
// Each iteration posts one NDJSON batch of realistic records; the producer answers 200 only
// after Kafka acknowledged them, so the latency measured is ingest-to-durable. Every record
// carries a unique request_id (k6-<run>-<vu>-<iteration>-<index>); with LOG_ACCEPTED=true each
// fully accepted batch is logged ("accepted <prefix>"), so scripts/lib/records.py (--k6-log) can
// find every accepted record in Kafka by identity. The load's shape (not the thresholds) scales by environment: VUS,
// STEADY (duration), SPIKE_VUS, SPIKE_STAGE (duration of each spike stage).
import http from 'k6/http';
import { check } from 'k6';
import exec from 'k6/execution';
import { Counter, Rate } from 'k6/metrics';

const PRODUCER_URL = __ENV.PRODUCER_URL || 'http://127.0.0.1:8000';
const TOKEN = __ENV.INGEST_TOKEN || '';
const BATCH = parseInt(__ENV.BATCH || '100', 10);
const RUN = __ENV.RUN_ID || 'run';
const LOG_ACCEPTED = __ENV.LOG_ACCEPTED === 'true';
const VUS = parseInt(__ENV.VUS || '10', 10);
const STEADY = __ENV.STEADY || '1m';
const SPIKE_VUS = parseInt(__ENV.SPIKE_VUS || '40', 10);
const SPIKE_STAGE = __ENV.SPIKE_STAGE || '20s';

const recordsAccepted = new Counter('records_accepted');
const recordsRejected = new Counter('records_rejected');
const ingestErrors = new Rate('ingest_errors');

export const options = {
  scenarios: {
    steady: { executor: 'constant-vus', vus: VUS, duration: STEADY },
    spike: { executor: 'ramping-vus', startTime: STEADY, startVUs: VUS,
      stages: [{ duration: SPIKE_STAGE, target: SPIKE_VUS }, { duration: SPIKE_STAGE, target: 0 }] },
  },
  thresholds: {
    ingest_errors: ['rate<0.01'],
    http_req_duration: ['p(95)<500', 'p(99)<1500'],
  },
};

const SERVICES = ['api-gateway', 'auth-service', 'order-service', 'payment-service'];
const LEVELS = ['info', 'info', 'info', 'debug', 'warn', 'error'];

function batch(prefix, vu, iter) {
  const lines = [];
  for (let i = 0; i < BATCH; i++) {
    lines.push(JSON.stringify({
      timestamp: new Date().toISOString(),
      level: LEVELS[(iter + i) % LEVELS.length],
      service: SERVICES[(vu + i) % SERVICES.length],
      message: `k6 load record ${vu}-${iter}-${i}`,
      request_id: `${prefix}-${i}`,
      http: { method: 'POST', path: '/v1/orders', status: 201, duration_ms: (i * 7) % 300 },
    }));
  }
  return lines.join('\n');
}

export default function () {
  const headers = { 'Content-Type': 'application/x-ndjson' };
  if (TOKEN) headers.Authorization = `Bearer ${TOKEN}`;
  // __VU numbers are reused by the two scenarios: the scenario's name keeps prefixes unique.
  const prefix = `k6-${RUN}-${exec.scenario.name}-${__VU}-${__ITER}`;
  const res = http.post(`${PRODUCER_URL}/v1/logs`, batch(prefix, __VU, __ITER), { headers });
  const ok = check(res, {
    'status is 200': (r) => r.status === 200,
    'every record accepted': (r) => r.status === 200 && r.json('accepted') === BATCH,
  });
  ingestErrors.add(!ok);
  if (res.status === 200) {
    recordsAccepted.add(res.json('accepted'));
    recordsRejected.add(res.json('rejected'));
    if (LOG_ACCEPTED && res.json('accepted') === BATCH) console.log(`accepted ${prefix}`);
  }
}
