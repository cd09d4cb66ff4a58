// Operators' roles (issue 15): each includes the rights of the ones before it.
//
//   viewer    read rules, nodes, counters, explain, audit; watch counters
//   operator  also write rules (create, update, delete, import, /manage-ip)
//   admin     also API tokens, enrollment, nodes, forced overrides
export const ROLES = ['viewer', 'operator', 'admin'] as const;
export type Role = (typeof ROLES)[number];

const RANK: Record<Role, number> = { viewer: 1, operator: 2, admin: 3 };

export function roleAtLeast(have: Role, need: Role): boolean {
  return RANK[have] >= RANK[need];
}

export function isRole(v: string): v is Role {
  return (ROLES as readonly string[]).includes(v);
}
