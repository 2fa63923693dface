// Users (seed: the DRF /users API): moleculer-db CRUD over the shared pool. externalId is unique:
// a second user with the same one is a 409. The scheduler upserts users as it processes ids.
import type { ServiceSchema } from "moleculer";
import { DataTypes, type Model, type ModelStatic, type Sequelize } from "sequelize";
import { DbMixin } from "../mixins/db.mixin";
import type { Runtime } from "../runtime";

function defineUser(db: Sequelize): ModelStatic<Model> {
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

const fields = {
  name: { type: "string", max: 500, optional: true, nullable: true },
  email: { type: "email", optional: true, nullable: true },
  profile: { type: "object", optional: true, nullable: true },
} as const;
const externalId = { type: "number", integer: true, positive: true, max: Number.MAX_SAFE_INTEGER } as const;

export default function usersService({ db }: Runtime): ServiceSchema {
  return {
    name: "users",
    mixins: [DbMixin(db, defineUser(db))],
    // moleculer-db's list and find are paginated and capped.
    settings: { pageSize: 50, maxPageSize: 500, maxLimit: 500 } as ServiceSchema["settings"],
    actions: {
      insert: false,
      remove: false,
      create: { retryPolicy: { enabled: false }, params: { externalId, ...fields, $$strict: true } },
      update: { params: { id: { type: "number", integer: true, positive: true, convert: true }, externalId: { ...externalId, optional: true }, ...fields, $$strict: true } },
    },
  };
}
