// fleetwall unblock <ip|cidr>: deletes the address's own fleet-wide ingress
// deny rule (RuleService/ManageAddress, the service behind /manage-ip), and
// says so when broader rules go on blocking the address.
import {
  AddressOperation,
  ManageAddressRequest,
  ManageAddressResult,
  manageAddressResultToJSON,
} from '../../../proto/gen/fleetwall/v1/rule_service.js';
import { parseArgs, UsageError } from '../args.js';
import { unary } from '../client.js';
import type { Context } from '../context.js';
import { RULE_HEADERS, ruleJson, ruleRow, table } from '../output.js';

const USAGE = 'usage: fleetwall unblock <ip|cidr>';

export async function unblockCommand(ctx: Context, argv: string[]): Promise<void> {
  const p = parseArgs(argv, {});
  if (p.positionals.length !== 1) throw new UsageError(USAGE);
  const address = p.positionals[0]!;
  const c = ctx.clients();
  const res = await unary(
    c,
    c.rules,
    c.rules.manageAddress,
    ManageAddressRequest.fromPartial({ operation: AddressOperation.ADDRESS_OPERATION_UNBLOCK, address }),
  );
  const still = res.result === ManageAddressResult.MANAGE_ADDRESS_RESULT_STILL_BLOCKED;
  if (ctx.out.json) {
    ctx.out.writeJson({
      result: manageAddressResultToJSON(res.result).replace('MANAGE_ADDRESS_RESULT_', '').toLowerCase(),
      cidr: res.cidr,
      rule: ruleJson(res.rule!),
      revision: res.revision.toString(),
      coveringRules: res.coveringRules.map(ruleJson),
    });
    return;
  }
  const r = res.rule!;
  if (!still) {
    ctx.out.write(`unblocked ${res.cidr} (deleted rule ${r.id}, revision ${res.revision})`);
    return;
  }
  ctx.out.write(`deleted rule ${r.id} (${res.cidr}, revision ${res.revision}), but ${res.cidr} is still blocked by:`);
  ctx.out.write(table(RULE_HEADERS, res.coveringRules.map(ruleRow)));
  ctx.out.write(
    `delete or narrow ${res.coveringRules.length === 1 ? 'it' : 'them'} (fleetwall rules rm <id>), or allow the address (fleetwall allow ${res.cidr})`,
  );
}
