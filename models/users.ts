// The users table (seed: the DRF /users API), created by migrations, never by sync(): the model
// behind moleculer-db's CRUD. The scheduler writes it with upsertUser.
import { DataTypes, type Model, type ModelStatic, type Sequelize } from "sequelize";

export function defineUser(db: Sequelize): ModelStatic<Model> {
  return (
    db.models.User ??
    db.define(
      "User",
      {
        id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true },
        externalId: { type: DataTypes.BIGINT, field: "external_id", allowNull: false, unique: true },
        name: DataTypes.TEXT,
        email: DataTypes.TEXT,
        profile: DataTypes.JSONB,
        createdAt: { type: DataTypes.DATE, field: "created_at" },
        updatedAt: { type: DataTypes.DATE, field: "updated_at" },
      },
      { tableName: "users", timestamps: true },
    )
  );
}

/** Upserts a user by its external id (idempotent: an id processed twice is one user). */
export async function upsertUser(db: Sequelize, externalId: number, profile: Record<string, unknown> | null): Promise<void> {
  const name = typeof profile?.name === "string" ? profile.name : null;
  const email = typeof profile?.email === "string" ? profile.email : null;
  await db.query(
    `INSERT INTO users (external_id, name, email, profile) VALUES ($1, $2, $3, $4)
     ON CONFLICT (external_id) DO UPDATE SET name = EXCLUDED.name, email = EXCLUDED.email, profile = EXCLUDED.profile, updated_at = now()`,
    { bind: [externalId, name, email, profile ? JSON.stringify(profile) : null] },
  );
}
