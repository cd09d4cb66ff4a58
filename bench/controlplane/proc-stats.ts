// What the bench reads about a process and a control plane: CPU time and
// RSS from /proc, and a histogram from its /metrics (HTTPS with the token
// when it has TLS on).
import { readFileSync } from 'node:fs';
import { get as httpsGet } from 'node:https';
import type { Access } from './enroll-agents.js';

/** utime + stime of a process, ms. */
export function cpuMs(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return ((Number(rest[11]) + Number(rest[12])) * 1000) / 100;
}

/** user + system CPU of this process, ms (µs resolution, unlike /proc's 10 ms ticks). */
export function ownCpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

export function rssMb(pid: number): { rss: number; peak: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(s)?.[1] ?? 0);
  return { rss: kb('VmRSS') / 1024, peak: kb('VmHWM') / 1024 };
}

/** GET /metrics. */
function metricsText(httpPort: number, access?: Access): Promise<string> {
  if (!access) return fetch(`http://127.0.0.1:${httpPort}/metrics`).then((r) => r.text());
  return new Promise((resolve, reject) => {
    const req = httpsGet(
      {
        host: '127.0.0.1',
        port: httpPort,
        path: '/metrics',
        ca: access.ca,
        servername: 'localhost',
        headers: { authorization: `Bearer ${access.token}` },
      },
      (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve(body));
      },
    );
    req.on('error', reject);
  });
}

export async function controlPlaneHistogram(
  httpPort: number,
  name: string,
  access?: Access,
): Promise<{ sum: number; count: number } | undefined> {
  const text = await metricsText(httpPort, access);
  const sum = new RegExp(`^${name}_sum\\{[^}]*\\} ([0-9.e+-]+)$`, 'm').exec(text)?.[1];
  const count = new RegExp(`^${name}_count\\{[^}]*\\} ([0-9.e+-]+)$`, 'm').exec(text)?.[1];
  return sum && count ? { sum: Number(sum), count: Number(count) } : undefined;
}
