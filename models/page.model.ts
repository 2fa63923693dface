import { DataTypes, type ModelStatic, type Model, type Sequelize } from "sequelize";

/** The pages table (created by migrations, never by sync()), with camelCase attribute names for the API. */
export function definePage(db: Sequelize): ModelStatic<Model> {
  return (
    db.models.Page ??
    db.define(
      "Page",
      {
        id: { type: DataTypes.BIGINT, primaryKey: true, autoIncrement: true },
        url: { type: DataTypes.TEXT, allowNull: false, unique: true },
        crawlId: { type: DataTypes.INTEGER, field: "crawl_id" },
        status: { type: DataTypes.INTEGER, allowNull: false },
        title: DataTypes.TEXT,
        contentType: { type: DataTypes.TEXT, field: "content_type" },
        body: DataTypes.TEXT,
        bytes: { type: DataTypes.INTEGER, allowNull: false },
        links: { type: DataTypes.INTEGER, allowNull: false },
        depth: { type: DataTypes.INTEGER, allowNull: false },
        fetchedAt: { type: DataTypes.DATE, field: "fetched_at" },
        storedAt: { type: DataTypes.DATE, field: "stored_at" },
      },
      { tableName: "pages", timestamps: false },
    )
  );
}
