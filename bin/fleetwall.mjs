#!/usr/bin/env node
// The `fleetwall` command. Runs the TypeScript sources through tsx's loader so
// a checkout needs no build step.
import { register } from 'tsx/esm/api';

register();
await import('../cli/src/main.ts');
