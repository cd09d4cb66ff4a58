// The TLS fleet's node certificates: each simulated node enrolled as a real
// one is (a join token with the labels it will say in Hello, then Enroll
// with a CSR).
import { createCsr } from '../../control-plane/src/pki/certificate-authority.js';
import { CreateJoinTokenRequest, EnrollRequest } from '../../proto/gen/fleetwall/v1/enrollment_service.js';
import { type ChildControlPlane, connectClients, unaryCall } from '../../test/support/control-plane.js';
import type { WorkerTls } from './agent-worker.js';

/** The CA to trust and the API token to send (the TLS side), or none (plaintext). */
export interface Access {
  readonly ca: Buffer;
  readonly token: string;
}

export type EnrolledNodes = Omit<WorkerTls, 'nodes'> & { readonly certs: string[] };

export const benchNodeName = (i: number): string => `bench-node-${String(i).padStart(5, '0')}`;

/**
 * Enrolls `agents` simulated nodes, 16 at a time: their node certificates.
 * One key for all: they are simulations, and the control plane names each
 * certificate after the token's enrollment, not the key.
 */
export async function enrollAgents(cp: ChildControlPlane, access: Access, agents: number): Promise<EnrolledNodes> {
  const { csrPem, keyPem } = await createCsr('bench-node');
  const admin = connectClients(cp.target, { ca: access.ca, token: access.token });
  const anon = connectClients(cp.target, { ca: access.ca });
  const certs: string[] = new Array(agents);
  try {
    let next = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        for (let i = next++; i < agents; i = next++) {
          const name = benchNodeName(i);
          const jt = await unaryCall(
            admin.enrollment,
            'createJoinToken',
            CreateJoinTokenRequest.fromPartial({ nodeName: name, labels: { env: 'bench', host: name } }),
          );
          const res = await unaryCall(
            anon.enrollment,
            'enroll',
            EnrollRequest.fromPartial({ joinToken: jt.token, nodeName: name, csrPem }),
          );
          certs[i] = res.certificatePem;
        }
      }),
    );
  } finally {
    admin.close();
    anon.close();
  }
  return { ca: access.ca.toString('utf8'), keyPem, certs };
}
