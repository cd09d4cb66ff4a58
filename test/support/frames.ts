// Ethernet frames for BPF_PROG_TEST_RUN verdict tables.

import { parseAddress } from '../../common/src/cidr.js';

const MAC_A = [0x02, 0, 0, 0, 0, 0xa];
const MAC_B = [0x02, 0, 0, 0, 0, 0xb];

export interface FrameOptions {
  /** 802.1Q tag (VLAN id). */
  vlan?: number;
  /** Total frame length (padded), at least the headers. */
  length?: number;
}

function eth(proto: number, o: FrameOptions): Buffer {
  const hdr = Buffer.alloc(o.vlan === undefined ? 14 : 18);
  hdr.set(MAC_B, 0);
  hdr.set(MAC_A, 6);
  if (o.vlan === undefined) {
    hdr.writeUInt16BE(proto, 12);
  } else {
    hdr.writeUInt16BE(0x8100, 12);
    hdr.writeUInt16BE(o.vlan & 0xfff, 14);
    hdr.writeUInt16BE(proto, 16);
  }
  return hdr;
}

function csum(b: Buffer): number {
  let s = 0;
  for (let i = 0; i < b.length; i += 2) s += b.readUInt16BE(i);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

/** IPv4/UDP frame from src to dst. */
export function ipv4Frame(src: string, dst: string, o: FrameOptions = {}): Buffer {
  const e = eth(0x0800, o);
  const ip = Buffer.alloc(20 + 8 + 18);
  ip[0] = 0x45;
  ip.writeUInt16BE(ip.length, 2);
  ip[8] = 64;
  ip[9] = 17;
  ip.set(parseAddress(src).bytes, 12);
  ip.set(parseAddress(dst).bytes, 16);
  ip.writeUInt16BE(csum(ip.subarray(0, 20)), 10);
  ip.writeUInt16BE(40000, 20);
  ip.writeUInt16BE(9, 22);
  ip.writeUInt16BE(8 + 18, 24);
  return pad(Buffer.concat([e, ip]), o.length);
}

/** IPv6/UDP frame from src to dst. */
export function ipv6Frame(src: string, dst: string, o: FrameOptions = {}): Buffer {
  const e = eth(0x86dd, o);
  const ip = Buffer.alloc(40 + 8 + 16);
  ip[0] = 0x60;
  ip.writeUInt16BE(8 + 16, 4);
  ip[6] = 17;
  ip[7] = 64;
  ip.set(parseAddress(src).bytes, 8);
  ip.set(parseAddress(dst).bytes, 24);
  ip.writeUInt16BE(40000, 40);
  ip.writeUInt16BE(9, 42);
  ip.writeUInt16BE(8 + 16, 44);
  return pad(Buffer.concat([e, ip]), o.length);
}

/** IPv4 or IPv6 frame with a TCP header to `dport` (flags: 0x02 SYN, 0x12 SYN+ACK, 0x10 ACK) or UDP to `dport`. */
export function l4Frame(src: string, dst: string, proto: 'tcp' | 'udp', dport: number, tcpFlags = 0x02): Buffer {
  const base = ipFrame(src, dst, { length: 0 });
  const v6 = src.includes(':');
  const ipOff = 14;
  const l4Off = ipOff + (v6 ? 40 : 20);
  const l4 = Buffer.alloc(proto === 'tcp' ? 20 : 8);
  l4.writeUInt16BE(40000, 0);
  l4.writeUInt16BE(dport, 2);
  if (proto === 'tcp') {
    l4[12] = 5 << 4;
    l4[13] = tcpFlags;
  } else l4.writeUInt16BE(8, 4);
  const f = Buffer.concat([base.subarray(0, l4Off), l4]);
  if (v6) {
    f[ipOff + 6] = proto === 'tcp' ? 6 : 17;
    f.writeUInt16BE(l4.length, ipOff + 4);
  } else {
    f[ipOff + 9] = proto === 'tcp' ? 6 : 17;
    f.writeUInt16BE(20 + l4.length, ipOff + 2);
    f.writeUInt16BE(0, ipOff + 10);
    f.writeUInt16BE(csum(f.subarray(ipOff, ipOff + 20)), ipOff + 10);
  }
  return pad(f, 60);
}

export function ipFrame(src: string, dst: string, o: FrameOptions = {}): Buffer {
  return src.includes(':') ? ipv6Frame(src, dst, o) : ipv4Frame(src, dst, o);
}

/** ARP request "who has tpa, tell spa". */
export function arpFrame(spa: string, tpa: string): Buffer {
  const e = eth(0x0806, {});
  e.fill(0xff, 0, 6);
  const a = Buffer.alloc(28);
  a.writeUInt16BE(1, 0);
  a.writeUInt16BE(0x0800, 2);
  a[4] = 6;
  a[5] = 4;
  a.writeUInt16BE(1, 6);
  a.set(MAC_A, 8);
  a.set(parseAddress(spa).bytes, 14);
  a.set(parseAddress(tpa).bytes, 24);
  return pad(Buffer.concat([e, a]), 60);
}

/** LLDP frame (ethertype 0x88cc) with a minimal TLV. */
export function lldpFrame(): Buffer {
  const e = eth(0x88cc, {});
  e.set([0x01, 0x80, 0xc2, 0, 0, 0x0e], 0);
  return pad(Buffer.concat([e, Buffer.from([0x02, 0x07, 0x04, 0x02, 0, 0, 0, 0, 0x0a, 0, 0])]), 60);
}

function pad(b: Buffer, len?: number): Buffer {
  if (len === undefined || len <= b.length) return b;
  return Buffer.concat([b, Buffer.alloc(len - b.length)]);
}
