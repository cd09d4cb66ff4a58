// The generated (ts-proto, proto/gen) modules of the API, derived from the one
// list the server serves and checks requests with: API_PROTO_FILES
// (control-plane/src/edge/proto-schema.ts). A service added there is in every
// test that walks the API (the access table, the hostile generator) with no
// list of its own to forget.
//
//   const modules = await apiProtoModules();      // those files and the fleetwall files they import
//   const services = await apiServiceDefinitions(); // [RuleServiceService, ...]: one per service of those files
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { API_PROTO_FILES, protoSchema } from '../../control-plane/src/edge/proto-schema.js';

const PROTO_DIR = resolve(import.meta.dirname, '../../proto');
const GEN_DIR = join(PROTO_DIR, 'gen');

/** API_PROTO_FILES and, transitively, the fleetwall .proto files they import (not google/*). */
export function apiProtoFiles(): string[] {
  const seen = new Set<string>();
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    for (const m of readFileSync(join(PROTO_DIR, file), 'utf8').matchAll(/^import\s+(?:public\s+)?"(fleetwall\/[^"]+\.proto)";/gm))
      visit(m[1]!);
  };
  for (const f of API_PROTO_FILES) visit(f);
  return [...seen];
}

let modules: Promise<Record<string, unknown>[]> | undefined;

/** The generated module of every file of apiProtoFiles(), loaded once. */
export function apiProtoModules(): Promise<Record<string, unknown>[]> {
  modules ??= Promise.all(
    apiProtoFiles().map((f) => import(pathToFileURL(join(GEN_DIR, f.replace(/\.proto$/, '.js'))).href) as Promise<Record<string, unknown>>),
  );
  return modules;
}

export interface ServiceMethodDefinition {
  readonly path: string;
  readonly requestStream: boolean;
  readonly responseStream: boolean;
}

/** The grpc-js service definition (ts-proto's `<Name>Service`) of every service the API's .proto files declare. */
export async function apiServiceDefinitions(): Promise<Record<string, ServiceMethodDefinition>[]> {
  const names = new Set([...protoSchema().requestTypes.keys()].map((k) => k.slice(0, k.indexOf('/'))));
  const mods = await apiProtoModules();
  return [...names].map((name) => {
    const def = mods.map((m) => m[`${name}Service`]).find((d) => d !== undefined);
    if (!def) throw new Error(`no generated definition ${name}Service in proto/gen: run npm run gen`);
    return def as Record<string, ServiceMethodDefinition>;
  });
}
