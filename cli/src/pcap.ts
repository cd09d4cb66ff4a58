// pcap files (the classic libpcap format, LINKTYPE_ETHERNET, microsecond
// timestamps) from drop events: the captured bytes when the node captured
// some (snap length > 0), else a frame synthesized from the event's fields
// (Ethernet, IPv4 or IPv6, TCP/UDP/ICMP header with its ports or type/code;
// checksums zero, orig_len = the packet's length). Pure: bytes out.

import { parseAddress } from '../../common/src/cidr.js';
import type { DropEvent } from '../../proto/gen/fleetwall/v1/event.js';

const LINKTYPE_ETHERNET = 1;
const SNAPLEN = 65535;

export function pcapHeader(): Buffer {
  const b = Buffer.alloc(24);
  b.writeUInt32LE(0xa1b2c3d4, 0);
  b.writeUInt16LE(2, 4);
  b.writeUInt16LE(4, 6);
  b.writeInt32LE(0, 8);
  b.writeUInt32LE(0, 12);
  b.writeUInt32LE(SNAPLEN, 16);
  b.writeUInt32LE(LINKTYPE_ETHERNET, 20);
  return b;
}

function l4(e: DropEvent): Buffer {
  switch (e.protocol) {
    case 6: {
      const t = Buffer.alloc(20);
      t.writeUInt16BE(e.sourcePort, 0);
      t.writeUInt16BE(e.destinationPort, 2);
      t[12] = 5 << 4;
      t[13] = e.tcpFlags & 0xff;
      return t;
    }
    case 17: {
      const u = Buffer.alloc(8);
      u.writeUInt16BE(e.sourcePort, 0);
      u.writeUInt16BE(e.destinationPort, 2);
      u.writeUInt16BE(8, 4);
      return u;
    }
    case 1:
    case 58: {
      const c = Buffer.alloc(8);
      c[0] = e.sourcePort & 0xff;
      c[1] = e.destinationPort & 0xff;
      return c;
    }
    default:
      return Buffer.alloc(0);
  }
}

/** A frame with the headers the event describes. */
export function synthesizeFrame(e: DropEvent): Buffer {
  let src: Uint8Array;
  let dst: Uint8Array;
  try {
    src = parseAddress(e.source).bytes;
    dst = parseAddress(e.destination).bytes;
  } catch {
    return Buffer.alloc(0);
  }
  const eth = Buffer.alloc(14);
  eth.set([0x02, 0, 0, 0, 0, 2], 0);
  eth.set([0x02, 0, 0, 0, 0, 1], 6);
  const payload = l4(e);
  if (src.length === 4) {
    eth.writeUInt16BE(0x0800, 12);
    const ip = Buffer.alloc(20);
    ip[0] = 0x45;
    ip.writeUInt16BE(20 + payload.length, 2);
    ip[8] = 64;
    ip[9] = e.protocol & 0xff;
    ip.set(src, 12);
    ip.set(dst, 16);
    let s = 0;
    for (let i = 0; i < 20; i += 2) s += ip.readUInt16BE(i);
    while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
    ip.writeUInt16BE(~s & 0xffff, 10);
    return Buffer.concat([eth, ip, payload]);
  }
  eth.writeUInt16BE(0x86dd, 12);
  const ip6 = Buffer.alloc(40);
  ip6[0] = 0x60;
  ip6.writeUInt16BE(payload.length, 4);
  ip6[6] = e.protocol & 0xff;
  ip6[7] = 64;
  ip6.set(src, 8);
  ip6.set(dst, 24);
  return Buffer.concat([eth, ip6, payload]);
}

/** One pcap record for the event. */
export function pcapRecord(e: DropEvent): Buffer {
  const data = e.packet.length > 0 ? Buffer.from(e.packet) : synthesizeFrame(e);
  const ms = e.time ? e.time.getTime() : 0;
  const h = Buffer.alloc(16);
  h.writeUInt32LE(Math.floor(ms / 1000), 0);
  h.writeUInt32LE((ms % 1000) * 1000, 4);
  h.writeUInt32LE(data.length, 8);
  h.writeUInt32LE(Math.max(data.length, e.length), 12);
  return Buffer.concat([h, data]);
}
