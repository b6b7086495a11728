-- The demo shop: orders with an extension table (JD's subscription pattern), subscriptions
-- and a product catalog.
CREATE DATABASE IF NOT EXISTS shop;
USE shop;
CREATE TABLE customers (id INT PRIMARY KEY, name VARCHAR(40) NOT NULL, city VARCHAR(40), created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP);
CREATE TABLE products (sku VARCHAR(20) PRIMARY KEY, title VARCHAR(80) NOT NULL, price DECIMAL(10,2) NOT NULL, stock INT NOT NULL);
CREATE TABLE orders (id BIGINT PRIMARY KEY, customer_id INT NOT NULL, sku VARCHAR(20) NOT NULL, qty INT NOT NULL,
                     amount DECIMAL(12,2) NOT NULL, status ENUM('new','paid','shipped','cancelled') NOT NULL, created_at DATETIME(3) NOT NULL);
CREATE TABLE order_ext (order_id BIGINT PRIMARY KEY, channel VARCHAR(10) NOT NULL, coupon VARCHAR(20));
CREATE TABLE subscriptions (customer_id INT, topic VARCHAR(20), active TINYINT(1) NOT NULL, PRIMARY KEY (customer_id, topic));
INSERT INTO customers (id, name, city) SELECT seq, CONCAT('customer-', seq), ELT(1 + seq % 4, 'Beijing', 'Shanghai', 'Shenzhen', 'Wuhan') FROM seq_1_to_200;
INSERT INTO products SELECT CONCAT('sku-', seq), CONCAT('product ', seq), 1 + seq % 50 + 0.99, 100 FROM seq_1_to_50;
INSERT INTO orders SELECT seq, 1 + seq % 200, CONCAT('sku-', 1 + seq % 50), 1 + seq % 3, (1 + seq % 3) * (1 + seq % 50 + 0.99),
                   ELT(1 + seq % 4, 'new', 'paid', 'shipped', 'cancelled'), NOW(3) - INTERVAL seq MINUTE FROM seq_1_to_5000;
INSERT INTO order_ext SELECT seq, ELT(1 + seq % 3, 'web', 'app', 'store'), IF(seq % 10 = 0, 'SPRING', NULL) FROM seq_1_to_5000;
INSERT INTO subscriptions SELECT 1 + seq % 200, ELT(1 + seq % 3, 'news', 'deals', 'tips'), seq % 2 FROM seq_1_to_400;
