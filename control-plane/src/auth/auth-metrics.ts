// fleetwall_auth_failures_total{reason}: refused calls and requests by
// catalogue reason (CREDENTIALS_REQUIRED, TOKEN_UNKNOWN, TOKEN_EXPIRED,
// TOKEN_REVOKED, ROLE_TOO_LOW, HOST_NOT_ALLOWED): a bounded label set.
import { Counter, type Registry } from 'prom-client';
import type { Reason } from '../errors/catalogue.js';

export function authFailureCounter(registry: Registry): (reason: Reason) => void {
  const c = new Counter({
    name: 'fleetwall_auth_failures_total',
    help: 'gRPC calls and HTTP requests refused by authentication or authorization, by reason.',
    labelNames: ['reason'],
    registers: [registry],
  });
  return (reason) => c.inc({ reason });
}
