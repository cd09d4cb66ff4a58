// bench:dataplane, load time:
//

// 2. seconds.load_1m_prefixes: applyOps() (applyBatch) of 1,000,000 entry.upsert ops
//    into a fresh table (one call), median of 3.

import { removePins } from '../../node-agent/src/datapath/bpf-datapath.js';
import { checkpoint } from '../lib/interrupt.js';
import { emit, median } from './report.js';
import { datapaths, openSet, pinDirs } from './sets.js';

export async function loadTime(): Promise<void> {
  const xs: number[] = [];
  for (let i = 0; i < 3; i++) {
    await checkpoint();
    const { dp, pinDir, seconds } = await openSet(`load${i}`, 4, 1_000_000, 6);
    xs.push(seconds);
    dp.close();
    datapaths.splice(datapaths.indexOf(dp), 1);
    removePins(pinDir);
    pinDirs.splice(pinDirs.indexOf(pinDir), 1);
  }
  emit('seconds.load_1m_prefixes', median(xs), {
    runs: xs.map((x) => Math.round(x * 1000) / 1000),
    prefixes: 1_000_000,
    shape: '500k /32 + 500k /24, one applyBatch() call, bucketed hash written through mmap',
  });
}
