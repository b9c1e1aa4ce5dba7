// PgJDBC against a Postgres server (tests/pg_clients.rs runs it against supportlake and
// against a real PostgreSQL with the same `events` rows).
//
// usage: java -cp postgresql.jar JdbcCheck.java HOST PORT PASSWORD
//
// Prints one JSON object per check: {"check", "ok", "value", "detail"}; "value" is what
// both servers must agree on. Covers what DBeaver, DataGrip and Metabase do through the
// driver: DatabaseMetaData (tables, columns, primary keys, indexes, types, imported keys),
// prepared statements past the driver's switch to binary results (the fifth execution),
// getObject on every column type, a fetch size that reads a portal in pieces, and the
// catalog SQL Metabase and DBeaver send themselves.

import java.sql.*;
import java.util.*;

public class JdbcCheck {
    static String host, port, password;
    static List<String> out = new ArrayList<>();

    static String q(String s) {
        if (s == null) return "null";
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            if (c == '"' || c == '\\') b.append('\\').append(c);
            else if (c < 0x20) b.append(String.format("\\u%04x", (int) c));
            else b.append(c);
        }
        return b.append('"').toString();
    }

    static String list(List<?> xs) {
        StringBuilder b = new StringBuilder("[");
        for (int i = 0; i < xs.size(); i++) {
            if (i > 0) b.append(',');
            Object x = xs.get(i);
            b.append(x instanceof List ? list((List<?>) x) : x == null ? "null" : q(x.toString()));
        }
        return b.append(']').toString();
    }

    interface Check { Object run(Connection c) throws Exception; }

    static void check(Connection c, String name, Check f) {
        try {
            Object v = f.run(c);
            String value = v == null ? "null" : v instanceof List ? list((List<?>) v) : q(v.toString());
            System.out.println("{\"check\":" + q(name) + ",\"ok\":true,\"value\":" + value + "}");
        } catch (Throwable e) {
            System.out.println("{\"check\":" + q(name) + ",\"ok\":false,\"value\":null,\"detail\":" + q(e.toString()) + "}");
            try { if (!c.getAutoCommit()) c.rollback(); } catch (SQLException ignored) { }
        }
    }

    static List<List<String>> rows(ResultSet rs, String... columns) throws SQLException {
        List<List<String>> out = new ArrayList<>();
        while (rs.next()) {
            List<String> row = new ArrayList<>();
            for (String c : columns) row.add(rs.getString(c));
            out.add(row);
        }
        rs.close();
        return out;
    }

    static List<List<String>> query(Connection c, String sql) throws SQLException {
        try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery(sql)) {
            int n = rs.getMetaData().getColumnCount();
            List<List<String>> out = new ArrayList<>();
            while (rs.next()) {
                List<String> row = new ArrayList<>();
                for (int i = 1; i <= n; i++) row.add(rs.getString(i));
                out.add(row);
            }
            return out;
        }
    }

    public static void main(String[] args) throws Exception {
        host = args[0]; port = args[1]; password = args[2];
        Properties p = new Properties();
        p.setProperty("user", "analyst");
        p.setProperty("password", password);
        p.setProperty("sslmode", "disable");
        p.setProperty("ApplicationName", "JdbcCheck");
        String url = "jdbc:postgresql://" + host + ":" + port + "/supportlake";
        try (Connection c = DriverManager.getConnection(url, p)) {
            DatabaseMetaData md = c.getMetaData();
            check(c, "connect: product", conn -> md.getDatabaseProductName());
            check(c, "metadata: getTables lists events", conn -> {
                List<List<String>> t = rows(md.getTables(null, "public", "events", new String[]{"TABLE", "VIEW"}),
                        "TABLE_SCHEM", "TABLE_NAME");
                if (t.isEmpty()) throw new Exception("events not listed");
                return t;
            });
            check(c, "metadata: getSchemas has public", conn -> {
                List<List<String>> s = rows(md.getSchemas(), "TABLE_SCHEM");
                if (!s.contains(List.of("public"))) throw new Exception("no public: " + s);
                return "public";
            });
            check(c, "metadata: getColumns of events", conn ->
                    rows(md.getColumns(null, "public", "events", "%"), "COLUMN_NAME", "TYPE_NAME", "DATA_TYPE", "ORDINAL_POSITION"));
            check(c, "metadata: getPrimaryKeys", conn -> rows(md.getPrimaryKeys(null, "public", "events"), "COLUMN_NAME"));
            check(c, "metadata: getIndexInfo", conn -> rows(md.getIndexInfo(null, "public", "events", false, true), "INDEX_NAME"));
            check(c, "metadata: getImportedKeys", conn -> rows(md.getImportedKeys(null, "public", "events"), "FKCOLUMN_NAME"));
            check(c, "metadata: getExportedKeys", conn -> rows(md.getExportedKeys(null, "public", "events"), "FKCOLUMN_NAME"));
            check(c, "metadata: getTypeInfo has int2 and timestamptz", conn -> {
                List<List<String>> t = rows(md.getTypeInfo(), "TYPE_NAME");
                for (String want : new String[]{"int2", "int8", "text", "timestamptz", "date", "float8", "bool"})
                    if (!t.contains(List.of(want))) throw new Exception("no " + want);
                return "ok";
            });
            // Prepared statements: PgJDBC switches to a named server statement with binary
            // results at the fifth execution (prepareThreshold=5); every execution must read
            // the same values.
            check(c, "prepared: eight executions agree (binary from the fifth)", conn -> {
                List<List<String>> first = null;
                try (PreparedStatement ps = conn.prepareStatement(
                        "SELECT event_id, ts, received_at, csat_score, date, kind FROM events " +
                        "WHERE csat_score IS NOT NULL AND csat_score >= ? ORDER BY event_id LIMIT 20")) {
                    for (int i = 0; i < 8; i++) {
                        ps.setInt(1, 1);
                        List<List<String>> got = new ArrayList<>();
                        try (ResultSet rs = ps.executeQuery()) {
                            while (rs.next()) {
                                got.add(List.of(rs.getString(1),
                                        String.valueOf(rs.getTimestamp(2).getTime()),
                                        String.valueOf(rs.getTimestamp(3) != null),
                                        String.valueOf(rs.getInt(4)),
                                        rs.getDate(5).toString(),
                                        rs.getString(6)));
                            }
                        }
                        if (first == null) first = got;
                        else if (!first.equals(got)) throw new Exception("execution " + (i + 1) + " read " + got + ", the first read " + first);
                    }
                }
                return first;
            });
            check(c, "prepared: getObject classes past the binary switch", conn -> {
                List<String> classes = new ArrayList<>();
                try (PreparedStatement ps = conn.prepareStatement(
                        "SELECT csat_score, ts, date, event_id FROM events WHERE csat_score = ? ORDER BY event_id LIMIT 1")) {
                    for (int i = 0; i < 6; i++) {
                        ps.setShort(1, (short) 5);
                        try (ResultSet rs = ps.executeQuery()) {
                            rs.next();
                            classes.clear();
                            for (int k = 1; k <= 4; k++) classes.add(rs.getObject(k).getClass().getSimpleName() + "=" + rs.getObject(k));
                            classes.set(1, rs.getObject(2).getClass().getSimpleName());
                        }
                    }
                }
                return classes;
            });
            check(c, "prepared: getObject on catalog types (oid, name, char, regproc)", conn -> {
                List<String> classes = new ArrayList<>();
                try (PreparedStatement ps = conn.prepareStatement(
                        "SELECT t.oid, t.typname, t.typtype, t.typinput FROM pg_catalog.pg_type t WHERE t.typname = ?")) {
                    for (int i = 0; i < 6; i++) {
                        ps.setString(1, "int2");
                        try (ResultSet rs = ps.executeQuery()) {
                            if (!rs.next()) throw new Exception("no int2 in pg_type");
                            classes.clear();
                            for (int k = 1; k <= 4; k++) classes.add(String.valueOf(rs.getObject(k)));
                        }
                    }
                }
                return classes;
            });
            check(c, "fetch size: a portal read 50 rows at a time", conn -> {
                conn.setAutoCommit(false);
                int n = 0;
                try (Statement s = conn.createStatement()) {
                    s.setFetchSize(50);
                    try (ResultSet rs = s.executeQuery("SELECT event_id FROM events ORDER BY event_id LIMIT 420")) {
                        while (rs.next()) n++;
                    }
                }
                conn.commit();
                conn.setAutoCommit(true);
                return String.valueOf(n);
            });
            check(c, "savepoint: set, roll back to, release", conn -> {
                conn.setAutoCommit(false);
                Savepoint sp = conn.setSavepoint("sp1");
                try (Statement s = conn.createStatement()) {
                    try { s.executeQuery("SELECT nope FROM events"); } catch (SQLException expected) { }
                    conn.rollback(sp);
                    try (ResultSet rs = s.executeQuery("SELECT count(*) FROM events")) { rs.next(); }
                }
                Savepoint sp2 = conn.setSavepoint();
                conn.releaseSavepoint(sp2);
                conn.commit();
                conn.setAutoCommit(true);
                return "ok";
            });
            check(c, "count of events", conn -> query(conn, "SELECT count(*) FROM events"));
        }
    }
}
