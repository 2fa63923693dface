// moleculer-db over the process's one shared Sequelize pool.
//
// Two traps this avoids. Moleculer deep-clones every schema it merges, so an adapter placed in
// the schema (moleculer-db's documented way) arrives as a copy whose Sequelize instance has its
// own second pool: more connections than the process is allowed. So the adapter is attached in
// `created` (after moleculer-db's own `created` has put a placeholder there). And the stock
// adapter closes its Sequelize instance when the service stops; the pool belongs to the process,
// so this one leaves it open for the runtime to close.
import DbService from "moleculer-db";
import SequelizeDbAdapter from "moleculer-db-adapter-sequelize";
import type { ServiceSchema } from "moleculer";
import type { Model, ModelStatic, Sequelize } from "sequelize";

class SharedSequelizeAdapter extends SequelizeDbAdapter {
  override async disconnect(): Promise<void> {}
}

export function DbMixin(db: Sequelize, model: ModelStatic<Model>): Partial<ServiceSchema> {
  return {
    mixins: [DbService as unknown as Partial<ServiceSchema>],
    model,
    created() {
      const adapter = new SharedSequelizeAdapter(db);
      adapter.init(this.broker, this);
      this.adapter = adapter;
    },
  };
}
