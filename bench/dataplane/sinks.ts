// The drop-rate phase's sinks, each attached and detached through the attach
// helper in namespace b while the generator runs: bare XDP drop, parse and
// drop, the /32 hash, fleetwall (100k, 1k, --compare-live builds), the plain
// trie, nftables (no XDP program: its set is loaded once), the real
// xdp-filter when this host can run it.
import type { NetnsPair } from '../../test/support/netns.js';
import type { JsonChild } from './children.js';
import { fillXdpFilter, xdpFilter, xdpFilterDrops } from './xdp-filter.js';

/** A sink: attached before a window, detached after it (a failure to attach or a wrong XDP mode fails the run). */
export type Case = {
  metric: string;
  attach: () => Promise<unknown>;
  detach: () => Promise<unknown>;
  ctx: Record<string, unknown>;
  sources: 'big' | 'small';
  xdp: boolean;
};

/** What the sinks need: the helper, the pins of the anchors (barePin) and of the fleetwall sets, the xdp-filter keys. */
export interface SinkSetup {
  readonly helper: JsonChild;
  readonly bed: NetnsPair;
  readonly ifb: string;
  readonly barePin: string;
  readonly fw: { readonly pinDir: string };
  readonly small: { readonly pinDir: string };
  readonly abPrograms: Array<[string, string]>;
  readonly useXdpFilter: boolean;
  readonly filterKeys: number[];
  /** Packets xdp-filter dropped over its windows, added up at each detach. */
  readonly counts: { xdpFilterDropped: bigint };
}

export function sinkCases(setup: SinkSetup): Case[] {
  const { helper, bed, ifb, barePin, fw, small, abPrograms, useXdpFilter, filterKeys, counts } = setup;
  const linkPin = `${barePin}/link`;
  const progCase = (metric: string, pin: string, sink: string): Case => ({
    metric,
    attach: () => helper.call({ op: 'prog', pin, linkPin }),
    detach: () => helper.call({ op: 'unprog', linkPin }),
    ctx: { sink },
    sources: 'big',
    xdp: true,
  });
  const fwCase = (metric: string, pinDir: string, sink: string, sources: 'big' | 'small'): Case => ({
    metric,
    attach: async () => {
      const r = (await helper.call({ op: 'fleetwall', pinDir })) as { xdpMode: string };
      if (r.xdpMode !== 'native') throw new Error(`fleetwall attached in ${r.xdpMode} mode`);
    },
    detach: () => helper.call({ op: 'unfleetwall', pinDir }),
    ctx: { sink },
    sources,
    xdp: true,
  });
  const cases: Case[] = [
    progCase('mpps.xdp_bare_drop', `${barePin}/prog`, 'bare XDP count-and-drop (does not read the packet)'),
    progCase('mpps.xdp_parse_drop', `${barePin}/parse`, 'bare XDP that reads the IPv4 source, then drops (no lookup)'),
    progCase(
      'mpps.xdp_hash32_100k_drop',
      `${barePin}/hash32`,
      'xdp-filter style: kernel HASH of the same 100k as exact /32 source keys (lookup, count, drop)',
    ),
    fwCase('mpps.fleetwall_100k_drop', fw.pinDir, 'fleetwall XDP, 50k /32 + 50k /24, hash (K=6) + trie', 'big'),
    ...abPrograms.map(([ab, file]) =>
      progCase(
        `mpps.fleetwall_100k_${ab}_drop`,
        `${barePin}/fw_${ab}`,
        `fleetwall 100k maps, program ${file}, attached as a plain XDP link`,
      ),
    ),
    fwCase('mpps.fleetwall_1k_drop', small.pinDir, 'fleetwall XDP, 500 /32 + 500 /24 (traffic from that set)', 'small'),
    progCase('mpps.xdp_trie_100k_drop', `${barePin}/trie`, 'plain XDP LPM trie of the same 100k prefixes (lookup, count, drop)'),
    {
      metric: 'mpps.nft_100k_drop',
      attach: async () => null,
      detach: async () => null,
      ctx: { sink: 'nftables netdev ingress, interval set of the same 100k' },
      sources: 'big',
      xdp: false,
    },
    ...(useXdpFilter
      ? [
          {
            metric: 'mpps.xdp_filter_10k_drop',
            attach: async () => {
              xdpFilter(bed, ['load', '-m', 'native', '-f', 'ipv4', ifb]); // policy allow: listed addresses drop
              fillXdpFilter(filterKeys);
            },
            detach: async () => {
              const dropped = xdpFilterDrops();
              if (dropped === 0n) throw new Error('xdp-filter dropped nothing: its rules did not match the traffic');
              counts.xdpFilterDropped += dropped;
              xdpFilter(bed, ['unload', ifb]);
            },
            ctx: {
              sink: "xdp-filter (xdp-tools), default policy allow (listed sources drop), IPv4: 10,000 exact source addresses (its map size), the generator's among them; through libxdp's dispatcher",
            },
            sources: 'big' as const,
            xdp: true,
          },
        ]
      : []),
  ];
  return cases;
}
