// The events setting of the benches' datapaths that read no drop events: off, so they load the
// programs without event code (fw_xdp_noev, fw_tc_noev), as an events-off node does.

import type { EventSettings } from '../../node-agent/src/datapath/events-abi.js';

export const EVENTS_OFF: EventSettings = Object.freeze({ enabled: false, ratePerSecond: 100, burst: 100, snapLen: 0 });
